package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/client/clienttest"
)

// exampleServer starts an in-memory imitation of a cairn node for the
// examples; real code points Config.Endpoints at cluster members.
func exampleServer() (endpoint string, stop func()) {
	s := clienttest.Start()
	return s.Addr(), s.Close
}

func Example() {
	endpoint, stop := exampleServer()
	defer stop()

	c, err := client.New(client.Config{Endpoints: []string{endpoint}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	put, err := c.Put(ctx, "config/db", []byte("postgres://db:5432"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("written at revision", put.Revision)

	kv, err := c.Get(ctx, "config/db")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s (mod revision %d, version %d, served by %s)\n",
		kv.Key, kv.Value, kv.ModRevision, kv.Version, kv.Node)
	// Output:
	// written at revision 1
	// config/db = postgres://db:5432 (mod revision 1, version 1, served by n1)
}

func ExampleNew() {
	// Any member serves any request; list several so the client can fail
	// over. DefaultConfig reads CAIRN_ENDPOINTS.
	cfg := client.DefaultConfig()
	cfg.Endpoints = []string{"127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"}
	cfg.Timeout = 2 * time.Second
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println(c.Endpoints())
	// Output: [http://127.0.0.1:8001 http://127.0.0.1:8002 http://127.0.0.1:8003]
}

func ExampleClient_Get_notFound() {
	endpoint, stop := exampleServer()
	defer stop()
	c, _ := client.New(client.Config{Endpoints: []string{endpoint}})
	defer c.Close()

	_, err := c.Get(context.Background(), "missing")
	if errors.Is(err, client.ErrNotFound) {
		fmt.Println("no such key")
	}
	// Output: no such key
}

// A read-modify-write loop with compare-and-swap: the write succeeds only if
// nobody changed the key since it was read.
func ExampleClient_Put_compareAndSwap() {
	endpoint, stop := exampleServer()
	defer stop()
	c, _ := client.New(client.Config{Endpoints: []string{endpoint}})
	defer c.Close()
	ctx := context.Background()

	// WithCAS(0) creates the key only if it does not exist yet.
	if _, err := c.Put(ctx, "counter", []byte("1"), client.WithCAS(0)); err != nil {
		log.Fatal(err)
	}
	_, err := c.Put(ctx, "counter", []byte("1"), client.WithCAS(0))
	var conflict *client.ConflictError
	if errors.As(err, &conflict) {
		fmt.Println("already exists; current mod revision", conflict.ModRevision)
	}

	kv, _ := c.Get(ctx, "counter")
	resp, err := c.Put(ctx, "counter", []byte("2"), client.WithCAS(kv.ModRevision))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("updated at revision", resp.Revision)
	// Output:
	// already exists; current mod revision 1
	// updated at revision 2
}

func ExampleClient_List() {
	endpoint, stop := exampleServer()
	defer stop()
	c, _ := client.New(client.Config{Endpoints: []string{endpoint}})
	defer c.Close()
	ctx := context.Background()
	for _, k := range []string{"jobs/1", "jobs/2", "jobs/3", "other"} {
		_, _ = c.Put(ctx, k, []byte("payload of "+k))
	}

	// Page through every key under "jobs/", two at a time.
	var opts []client.Option
	for {
		page, err := c.List(ctx, "jobs/", append(opts, client.WithLimit(2), client.WithKeysOnly())...)
		if err != nil {
			log.Fatal(err)
		}
		for _, kv := range page.KVs {
			fmt.Println(kv.Key)
		}
		if !page.More {
			break
		}
		opts = []client.Option{client.WithAfter(page.KVs[len(page.KVs)-1].Key)}
	}
	// Output:
	// jobs/1
	// jobs/2
	// jobs/3
}

func ExampleClient_Delete_prefix() {
	endpoint, stop := exampleServer()
	defer stop()
	c, _ := client.New(client.Config{Endpoints: []string{endpoint}})
	defer c.Close()
	ctx := context.Background()
	for _, k := range []string{"tmp/a", "tmp/b", "keep"} {
		_, _ = c.Put(ctx, k, []byte("x"))
	}

	resp, err := c.Delete(ctx, "tmp/", client.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted", resp.Deleted)
	// Output: deleted 2
}

func ExampleClient_Members() {
	endpoint, stop := exampleServer()
	defer stop()
	c, _ := client.New(client.Config{Endpoints: []string{endpoint}})
	defer c.Close()

	resp, err := c.Members(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range resp.Members {
		fmt.Println(m.ID, m.RaftAddr, "voter:", m.Voter, "leader:", m.Leader)
	}
	// Output: n1 127.0.0.1:9001 voter: true leader: true
}

// Read your own writes from any node: a stale read carrying the write's
// revision waits until the node serving it has applied the write.
func ExampleWithMinRevision() {
	endpoint, stop := exampleServer()
	defer stop()
	c, _ := client.New(client.Config{Endpoints: []string{endpoint}})
	defer c.Close()
	ctx := context.Background()

	put, err := c.Put(ctx, "config/db", []byte("postgres://db2"))
	if err != nil {
		log.Fatal(err)
	}
	kv, err := c.Get(ctx, "config/db",
		client.WithConsistency(client.Stale), client.WithMinRevision(put.Revision))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (store at revision %d >= %d)\n", kv.Value, kv.Revision, put.Revision)
	// Output: postgres://db2 (store at revision 1 >= 1)
}

// A transfer between two accounts that happens only if neither changed
// since it was read.
func ExampleClient_Txn() {
	endpoint, stop := exampleServer()
	defer stop()
	c, _ := client.New(client.Config{Endpoints: []string{endpoint}})
	defer c.Close()
	ctx := context.Background()
	_, _ = c.Put(ctx, "acct/a", []byte("100"))
	_, _ = c.Put(ctx, "acct/b", []byte("50"))

	a, _ := c.Get(ctx, "acct/a")
	b, _ := c.Get(ctx, "acct/b")
	resp, err := c.Txn(ctx, client.TxnRequest{
		Compare: []client.Cmp{
			client.Compare("acct/a").ModRevision("==", a.ModRevision),
			client.Compare("acct/b").ModRevision("==", b.ModRevision),
		},
		Success: []client.Op{client.OpPut("acct/a", []byte("90")), client.OpPut("acct/b", []byte("60"))},
		Failure: []client.Op{client.OpGet("acct/", client.WithPrefix())},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("succeeded:", resp.Succeeded, "at revision", resp.Revision)
	// Output: succeeded: true at revision 3
}

// Follow every change under a prefix, past and future.
func ExampleClient_Watch() {
	endpoint, stop := exampleServer()
	defer stop()
	c, _ := client.New(client.Config{Endpoints: []string{endpoint}})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _ = c.Put(ctx, "jobs/1", []byte("queued"))

	events := c.Watch(ctx, "jobs/", client.WithPrefix(), client.WithRevision(1))
	go func() {
		_, _ = c.Put(ctx, "jobs/1", []byte("done"))
		_, _ = c.Delete(ctx, "jobs/1")
	}()
	for seen := 0; seen < 3; {
		resp := <-events
		if resp.Err != nil {
			log.Fatal(resp.Err)
		}
		for _, ev := range resp.Events {
			fmt.Println(ev.Type, ev.KV.Key, ev.Revision(), string(ev.KV.Value))
			seen++
		}
	}
	// Output:
	// put jobs/1 1 queued
	// put jobs/1 2 done
	// delete jobs/1 3
}
