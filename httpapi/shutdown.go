package httpapi

import (
	"net"
	"net/http"
	"sync"
)

// CloseNewConnsOnShutdown makes srv close, as soon as it starts shutting
// down, every connection on which no request has arrived yet. Shutdown
// otherwise waits up to 5 s for such a connection, and there often is one:
// an http.Transport (a peer's forwarding client, a Go client) keeps the
// spare connections it dialed and did not need. Call it before srv serves;
// it keeps any ConnState hook srv already has.
func CloseNewConnsOnShutdown(srv *http.Server) {
	var mu sync.Mutex
	fresh := map[net.Conn]struct{}{}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		if st == http.StateNew {
			fresh[c] = struct{}{}
		} else {
			delete(fresh, c)
		}
		mu.Unlock()
		if prev != nil {
			prev(c, st)
		}
	}
	// Shutdown runs this once its listeners are closed: no new connection
	// can come after it.
	srv.RegisterOnShutdown(func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range fresh {
			c.Close()
		}
	})
}
