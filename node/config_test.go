package node

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*Config)
		wantErr  bool
		lazyHold time.Duration
	}{
		{"defaults", func(*Config) {}, false, DefaultLazyHold},
		{"zero lazy hold means the default", func(c *Config) { c.LazyHold = 0 }, false, DefaultLazyHold},
		{"negative lazy hold: CRIU's own way", func(c *Config) { c.LazyHold = -1 }, false, -1},
		{"a lazy hold over a minute", func(c *Config) { c.LazyHold = 2 * time.Minute }, true, 0},
		{"a bad node name", func(c *Config) { c.Name = "Vg 1" }, true, 0},
		{"a relative data dir", func(c *Config) { c.DataDir = "var/lib/ferry" }, true, 0},
		{"a negative stop timeout", func(c *Config) { c.StopTimeout = -time.Second }, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Name: "vg-1", DataDir: t.TempDir()}
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Validate: %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if c.LazyHold != tt.lazyHold {
				t.Fatalf("LazyHold %s, want %s", c.LazyHold, tt.lazyHold)
			}
		})
	}
}
