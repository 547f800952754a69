package cluster

import "syscall"

// sysProcAttr puts each server in its own process group (a Ctrl-C in the
// terminal reaches only the test binary, which then cleans up) and asks
// the kernel to SIGKILL it if the test binary dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
