//go:build unix

package httpapi

import (
	"net"
	"syscall"
)

// peerOpen reports whether the other end of an idle connection has not
// closed it, with a non-blocking peek; true for a connection that cannot
// be peeked at (not a socket).
func peerOpen(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	open := true
	var b [1]byte
	// An error before the peek (a read deadline that has passed) means
	// nothing could be checked: not usable.
	if rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// 0 bytes and no error is the peer's FIN; EAGAIN means open and
		// quiet; data on an idle stream, or an error, means not usable.
		open = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	}) != nil {
		return false
	}
	return open
}
