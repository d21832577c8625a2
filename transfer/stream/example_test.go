package stream_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ferryhq/ferry/transfer/stream"
)

func Example() {
	ctx := context.Background()
	src, _ := os.MkdirTemp("", "ckpt")
	defer os.RemoveAll(src)
	_ = os.WriteFile(filepath.Join(src, "inventory.img"), []byte("criu image"), 0o600)
	parent, _ := os.MkdirTemp("", "incoming")
	defer os.RemoveAll(parent)

	m, err := stream.BuildManifest(ctx, src)
	if err != nil {
		fmt.Println(err)
		return
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stream.Send(ctx, pw, src, m, stream.DefaultSendOptions())
		pw.CloseWithError(err)
	}()
	got, st, err := stream.Receive(ctx, pr, filepath.Join(parent, "np-7"), stream.DefaultReceiveOptions())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(got.Entries[0].Path, st.Files, st.RawBytes)
	// Output: inventory.img 1 10
}
