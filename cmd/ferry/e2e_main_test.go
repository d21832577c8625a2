package main

import (
	"os"
	"testing"
)

// TestMain removes the binaries and image the end-to-end tests built, once every test is done.
func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}
