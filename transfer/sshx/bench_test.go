package sshx

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/transfer/stream"
	"github.com/ferryhq/ferry/transfer/stripe"

	"golang.org/x/crypto/ssh"
)

const benchTotal = 256 << 20

// sinkHandler reads a channel to EOF and then answers one byte.
func sinkHandler(_ context.Context, ch *Channel) {
	io.Copy(io.Discard, ch)
	ch.Write([]byte{1})
}

// pushAll writes total bytes spread over conns in parallel and waits for
// every sink to confirm.
func pushAll(b *testing.B, conns []net.Conn, total int) {
	buf := make([]byte, 256<<10)
	per := total / len(conns)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			for sent := 0; sent < per; sent += len(buf) {
				if _, err := c.Write(buf[:min(len(buf), per-sent)]); err != nil {
					b.Error(err)
					return
				}
			}
			c.(closeWriter).CloseWrite()
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}

// BenchmarkChannelThroughput moves 256 MiB per iteration over 1 and 4 SSH
// channels on one connection, for each cipher; MB/s is the payload rate.
func BenchmarkChannelThroughput(b *testing.B) {
	ca := newTestCA(b)
	for _, cipher := range []string{ssh.CipherAES128GCM, ssh.CipherChaCha20Poly1305} {
		for _, channels := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/%dch", cipher, channels), func(b *testing.B) {
				srv, addr := startServer(b, newTestIdentity(b, ca, "target"), "", func(c *ServerConfig) {
					c.Ciphers = []string{cipher}
				})
				srv.Handle(ChannelStream, []string{RoleAgent}, sinkHandler)
				pool := NewPool(&Dialer{Identity: newTestIdentity(b, ca, "source"), Ciphers: []string{cipher}})
				defer pool.Close()
				b.SetBytes(benchTotal)
				b.ResetTimer()
				for b.Loop() {
					conns := make([]net.Conn, channels)
					for i := range conns {
						c, err := pool.Open(context.Background(), addr, ChannelStream, nil)
						if err != nil {
							b.Fatal(err)
						}
						conns[i] = c
					}
					pushAll(b, conns, benchTotal)
					for _, c := range conns {
						c.Close()
					}
				}
			})
		}
	}
}

// BenchmarkSeparateConnections moves 256 MiB over 4 channels on 4 SSH
// connections, to show whether encryption on one connection is the limit.
func BenchmarkSeparateConnections(b *testing.B) {
	ca := newTestCA(b)
	srv, addr := startServer(b, newTestIdentity(b, ca, "target"), "", nil)
	srv.Handle(ChannelStream, []string{RoleAgent}, sinkHandler)
	d := &Dialer{Identity: newTestIdentity(b, ca, "source")}
	b.SetBytes(benchTotal)
	for b.Loop() {
		conns := make([]net.Conn, 4)
		for i := range conns {
			sc, err := d.Dial(context.Background(), addr)
			if err != nil {
				b.Fatal(err)
			}
			defer sc.Close()
			if conns[i], err = sc.OpenChannel(context.Background(), ChannelStream, nil); err != nil {
				b.Fatal(err)
			}
		}
		pushAll(b, conns, benchTotal)
	}
}

// BenchmarkTCPBaseline is the same transfer over plain loopback TCP.
func BenchmarkTCPBaseline(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, c)
				c.Write([]byte{1})
				c.Close()
			}()
		}
	}()
	b.SetBytes(benchTotal)
	for b.Loop() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		pushAll(b, []net.Conn{c}, benchTotal)
		c.Close()
	}
}

// BenchmarkStripe moves 256 MiB of half text-like, half random bytes as one ordered stream striped over
// 1, 2 and 4 SSH connections (transfer/stripe: frames, CRC32C, zstd where it pays, SHA-256 at both ends),
// as a migration's page tunnel does. MB/s is the raw rate.
func BenchmarkStripe(b *testing.B) {
	ca := newTestCA(b)
	data := make([]byte, benchTotal)
	for i := 0; i < len(data)/2; i++ {
		data[i] = "the quick brown fox jumps over the lazy dog\n"[i%44]
	}
	rnd := mrand.New(mrand.NewPCG(1, 2))
	for i := len(data) / 2; i < len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rnd.Uint64())
	}
	for _, lanes := range []int{1, 2, 4} {
		for _, compress := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dconns/zstd=%v", lanes, compress), func(b *testing.B) {
				srv, addr := startServer(b, newTestIdentity(b, ca, "target"), "", nil)
				var mu sync.Mutex
				var got []*Channel
				fin := make(chan struct{})
				ready := make(chan []io.Reader, 1)
				srv.Handle(ChannelStream, []string{RoleAgent}, func(_ context.Context, ch *Channel) {
					mu.Lock()
					done := fin
					got = append(got, ch)
					if len(got) == lanes {
						rs := make([]io.Reader, lanes)
						for _, c := range got {
							rs[int(c.ExtraData()[0])] = c
						}
						got = nil
						ready <- rs
					}
					mu.Unlock()
					<-done
				})
				pool := NewPool(&Dialer{Identity: newTestIdentity(b, ca, "source")})
				defer pool.Close()
				b.SetBytes(benchTotal)
				for b.Loop() {
					ws := openLanes(b, pool, addr, lanes)
					rs := <-ready
					recv := make(chan error, 1)
					go func() {
						_, err := stripe.Receive(context.Background(), rs, io.Discard, stripe.Options{})
						recv <- err
					}()
					if _, err := stripe.Send(context.Background(), bytes.NewReader(data), ws, stripe.Options{Compress: compress}); err != nil {
						b.Fatal(err)
					}
					if err := <-recv; err != nil {
						b.Fatal(err)
					}
					mu.Lock()
					close(fin)
					fin = make(chan struct{})
					mu.Unlock()
				}
			})
		}
	}
}

// writeMemload writes benchTotal bytes of memloadData to path without holding them all in memory (the
// benchmark may run under a GOMEMLIMIT below that).
func writeMemload(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	half := benchTotal / 2
	var line []byte
	w := bufio.NewWriterSize(f, 1<<20)
	for n, i := 0, 0; n < half; i++ {
		line = fmt.Appendf(line[:0], "line %08d: the quick brown fox jumps over the lazy dog, again and again\n", i)
		line = line[:min(len(line), half-n)]
		w.Write(line)
		n += len(line)
	}
	rnd := mrand.New(mrand.NewPCG(1, 2))
	var word [8]byte
	for i := half; i+8 <= benchTotal; i += 8 {
		binary.LittleEndian.PutUint64(word[:], rnd.Uint64())
		w.Write(word[:])
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
}

// BenchmarkStream sends a 256 MiB pages file of what cmd/memload holds (half lines of text, half random)
// with stream.SendParallel over 4 (and 2) SSH connections to stream.ReceiveParallel in the same process
// (staged on disk, no fsync, then removed), as an agent's directory stream does: both ends share the
// machine's cores. MB/s is the raw rate, cpu-ms/op the CPU time of both ends per transfer.
func BenchmarkStream(b *testing.B) {
	src := b.TempDir()
	writeMemload(b, filepath.Join(src, "pages-1.img"))
	m, err := stream.ListManifest(context.Background(), src)
	if err != nil {
		b.Fatal(err)
	}
	for _, lanes := range []int{4, 2} {
		for _, frame := range benchFrames() {
			b.Run(fmt.Sprintf("lanes=%d/frame=%dKiB", lanes, frame>>10), func(b *testing.B) {
				opts := stream.DefaultSendOptions()
				opts.Depth = 2 // as the agent sends
				opts.FrameSize = frame
				benchStream(b, src, m, lanes, opts)
			})
		}
	}
}

// benchFrames are the frame sizes BenchmarkStream tries: the default, or FERRY_BENCH_FRAMES (KiB, comma-separated).
func benchFrames() []int {
	env := os.Getenv("FERRY_BENCH_FRAMES")
	if env == "" {
		return []int{stream.DefaultFrameSize}
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		var k int
		fmt.Sscan(f, &k)
		out = append(out, k<<10)
	}
	return out
}

func benchStream(b *testing.B, src string, m *stream.Manifest, lanes int, opts stream.SendOptions) {
	ca := newTestCA(b)
	dst := b.TempDir()
	srv, addr := startServer(b, newTestIdentity(b, ca, "target"), "", nil)
	var mu sync.Mutex
	var got []*Channel
	var n int
	fin := make(chan struct{})
	results := make(chan error, 1)
	srv.Handle(ChannelStream, []string{RoleAgent}, func(ctx context.Context, ch *Channel) {
		mu.Lock()
		got = append(got, ch)
		done := fin
		if len(got) < lanes {
			mu.Unlock()
			<-done
			return
		}
		rs := make([]io.Reader, lanes)
		for _, c := range got {
			rs[int(c.ExtraData()[0])] = c
		}
		got = nil
		fin = make(chan struct{})
		n++
		dir := filepath.Join(dst, fmt.Sprint(n))
		mu.Unlock()
		_, _, err := stream.ReceiveParallel(ctx, rs, dir, stream.ReceiveOptions{})
		os.RemoveAll(dir)
		close(done)
		results <- err
	})
	pool := NewPool(&Dialer{Identity: newTestIdentity(b, ca, "source")})
	defer pool.Close()
	b.SetBytes(benchTotal)
	var st stream.Stats
	var err error
	cpu0 := cpuTime()
	for b.Loop() {
		ws := openLanes(b, pool, addr, lanes)
		if st, err = stream.SendParallel(context.Background(), ws, src, m, opts); err != nil {
			b.Fatal(err)
		}
		if err := <-results; err != nil {
			b.Fatal(err)
		}
		for _, w := range ws {
			w.(net.Conn).Close()
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(st.Ratio(), "ratio")
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openLanes opens n stream channels to addr, lane i on the pool's connection i; they are closed when the
// benchmark ends.
func openLanes(b *testing.B, pool *Pool, addr string, n int) []io.Writer {
	ws := make([]io.Writer, n)
	for i := range ws {
		c, err := pool.OpenOn(context.Background(), addr, i, ChannelStream, []byte{byte(i)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		ws[i] = c
	}
	return ws
}
