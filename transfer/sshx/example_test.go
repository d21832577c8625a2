package sshx_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/ferryhq/ferry/transfer/sshx"
)

// An agent serves its HTTP API over SSH; another agent calls it.
func Example() {
	ca, _ := sshx.NewCA()
	n1, _ := ca.NewIdentity("n1", 0)
	n2, _ := ca.NewIdentity("n2", 0)

	srv, _ := sshx.NewServer(sshx.ServerConfig{Identity: n1})
	api := &http.Server{
		ConnContext: sshx.ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := sshx.PeerFromContext(r.Context())
			fmt.Fprintf(w, "hello %s (%s)", p.Name, p.Role)
		}),
	}
	go api.Serve(srv.HTTPListener(sshx.ChannelAPI, []string{sshx.RoleAgent}))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)

	pool := sshx.NewPool(&sshx.Dialer{Identity: n2})
	defer pool.Close()
	hc := &http.Client{Transport: sshx.HTTPTransport(pool, sshx.ChannelAPI)}
	resp, err := hc.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(string(b))
	// Output: hello n2 (agent)
}
