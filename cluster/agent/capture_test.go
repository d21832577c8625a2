package agent

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCaptureWriterHoldsTheResult: progress events go through at once; the result event reaches the client
// only on release (after the caller recorded what the result says), and the tail still holds it.
func TestCaptureWriterHoldsTheResult(t *testing.T) {
	w := httptest.NewRecorder()
	c := &captureWriter{statusWriter: statusWriter{ResponseWriter: w, status: 200}}
	progress := `{"type":"progress","data":{"phase":"importing"}}` + "\n"
	result := `{"type":"result","data":{"name":"busybox"}}` + "\n"
	for _, line := range []string{progress, result} {
		if _, err := c.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.Body.String(); got != progress {
		t.Fatalf("before release the client got %q, want only the progress event", got)
	}
	if !strings.Contains(string(lastLine(c.tail)), `"busybox"`) {
		t.Fatalf("the tail lost the result: %q", c.tail)
	}
	c.release()
	c.release() // a second release sends nothing more
	if got := w.Body.String(); got != progress+result {
		t.Fatalf("after release the client got %q", got)
	}
}
