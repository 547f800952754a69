package httpapi_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestWritesThroughLeaderHandover keeps writing through every node while
// the leader shuts down: no write may fail with a 500 or a broken
// connection, and every acknowledged write survives on the new majority.
func TestWritesThroughLeaderHandover(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)

	type outcome struct {
		key    string
		status int
		body   string
		err    error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for _, tn := range c.followers(l) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("handover/%s/%04d", tn.id, i)
				r, err := tryCall(tn, "PUT", kvPath(key), []byte("v"))
				mu.Lock()
				outcomes = append(outcomes, outcome{key, r.Status, string(r.Body), err})
				mu.Unlock()
			}
		}()
	}
	waitFor(t, 10*time.Second, "writes to flow", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(outcomes) < 20 {
			return fmt.Errorf("%d writes so far", len(outcomes))
		}
		return nil
	})
	c.stop(l)
	nl := c.leader(t)
	mu.Lock()
	n := len(outcomes)
	mu.Unlock()
	waitFor(t, 10*time.Second, "writes to the new leader", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(outcomes) < n+20 {
			return fmt.Errorf("%d writes since the handover", len(outcomes)-n)
		}
		return nil
	})
	close(stop)
	wg.Wait()

	rev := nl.st.Revision()
	waitRevision(t, rev, c.running()...)
	failed := 0
	for _, o := range outcomes {
		switch {
		case o.err != nil:
			t.Errorf("PUT %s: %v", o.key, o.err)
		case o.status == http.StatusOK:
			for _, tn := range c.running() {
				if _, _, err := tn.st.Get(o.key); err != nil {
					t.Errorf("acknowledged write %s missing on %s: %v", o.key, tn.id, err)
				}
			}
		case o.status >= 500 && o.status != http.StatusServiceUnavailable && o.status != http.StatusGatewayTimeout:
			t.Errorf("PUT %s: %d %s", o.key, o.status, o.body)
		default:
			failed++
			t.Logf("PUT %s during the handover: %d %s", o.key, o.status, o.body)
		}
	}
	t.Logf("%d writes, %d not acknowledged, new leader %s", len(outcomes), failed, nl.id)
	if failed > 0 {
		t.Errorf("%d writes failed during a planned handover; they should wait for the new leader", failed)
	}
}

// TestTTLExpiresAfterLeaderChange: the reaper runs on whichever node leads.
func TestTTLExpiresAfterLeaderChange(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	f := c.followers(l)[0]
	var put putJSON
	call(t, f, "PUT", kvPath("ttl/k")+"?ttl=1s", []byte("v")).wantOK(t).decode(t, &put)
	waitRevision(t, put.Revision, c.nodes...)
	c.stop(l)
	c.leader(t)
	// The deletion is replicated, not just hidden by the clock: the
	// revision moves on every node.
	waitRevision(t, put.Revision+1, c.running()...)
	for _, tn := range c.running() {
		if _, _, err := tn.st.Get("ttl/k"); err == nil {
			t.Errorf("%s still has ttl/k at revision %d", tn.id, tn.st.Revision())
		}
	}
	var lst listJSON
	call(t, f, "GET", "/v1/kv/?prefix=ttl/", nil).wantOK(t).decode(t, &lst)
	if len(lst.KVs) != 0 || lst.Revision != put.Revision+1 {
		t.Fatalf("after expiry: %+v", lst)
	}
}
