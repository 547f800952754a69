//go:build !unix

package httpapi

import "net"

// peerOpen cannot check here: it assumes the connection is usable.
func peerOpen(net.Conn) bool { return true }
