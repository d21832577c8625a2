package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	gocriu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// PageServer is a CRIU page server started through go-criu: it listens on Address:Port, receives the memory
// pages of one dump (`criu dump --page-server`, or runc checkpoint --page-server) into ImagesDir, and exits
// when that dump's connection ends. CRIU's page-server protocol is plain and unauthenticated, so ferry only
// ever binds it to the node's loopback and reaches it through an SSH tunnel.
type PageServer struct {
	Pid       int
	Port      int
	Address   string
	ImagesDir string
}

// PageServerConfig configures StartPageServer. Zero Port lets CRIU pick a free port.
type PageServerConfig struct {
	Binary    string // criu; empty means "criu" from PATH
	ImagesDir string // where the pages land
	Address   string // empty means 127.0.0.1
	Port      int
	LogFile   string // name of the log inside ImagesDir's parent work dir; empty: page-server.log
}

// ErrPageServer wraps a failure to start CRIU's page server.
var ErrPageServer = errors.New("could not start CRIU's page server")

// StartPageServer starts a page server as a child of CRIU (PAGE_SERVER_CHLD) and returns its pid and port.
func StartPageServer(ctx context.Context, cfg PageServerConfig) (*PageServer, error) {
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	if cfg.LogFile == "" {
		cfg.LogFile = "page-server.log"
	}
	dir, err := os.Open(cfg.ImagesDir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPageServer, err)
	}
	defer dir.Close()
	work, err := os.Open(filepath.Dir(cfg.ImagesDir))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPageServer, err)
	}
	defer work.Close()
	c := gocriu.MakeCriu()
	if cfg.Binary != "" {
		c.SetCriuPath(cfg.Binary)
	}
	opts := &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(int32(dir.Fd())),
		WorkDirFd:   proto.Int32(int32(work.Fd())),
		LogFile:     proto.String(cfg.LogFile),
		LogLevel:    proto.Int32(4),
		Ps:          &rpc.CriuPageServerInfo{Address: proto.String(cfg.Address), Port: proto.Int32(int32(cfg.Port))},
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pid, port, err := c.StartPageServerChld(opts)
	if err != nil {
		return nil, fmt.Errorf("%w on %s:%d: %v (log: %s)", ErrPageServer, cfg.Address, cfg.Port,
			err, filepath.Join(filepath.Dir(cfg.ImagesDir), cfg.LogFile))
	}
	return &PageServer{Pid: pid, Port: port, Address: cfg.Address, ImagesDir: cfg.ImagesDir}, nil
}

// Stop kills the page server if it still runs (after a failed dump, it would wait for a client forever).
func (p *PageServer) Stop() {
	if p != nil && p.Pid > 0 {
		_ = unix.Kill(p.Pid, unix.SIGKILL)
	}
}
