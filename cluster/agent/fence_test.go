package agent

import (
	"slices"
	"testing"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
)

func TestStrays(t *testing.T) {
	st := cluster.NewState()
	for _, n := range []string{"vg-1", "vg-2"} {
		st.Nodes[n] = &cluster.Node{Name: n}
	}
	place := func(name, on string) { st.Containers[name] = &cluster.Container{Name: name, Node: on} }
	place("here", "vg-1")
	place("moved", "vg-2")
	place("migrating", "vg-2")
	place("busy", "vg-2")
	place("loading", "vg-2")
	place("on-unknown", "vg-9")
	place("stopped-moved", "vg-2")
	place("restored-elsewhere", "vg-2") // a failover restored it on vg-2 while vg-1 was dead; it ended here
	place("restored-running", "vg-2")   // the same, but vg-1 was only cut off and kept running it
	st.Migrations["m1"] = &cluster.MigrationJob{ID: "m1", Container: "migrating", Source: "vg-2", Target: "vg-1", State: cluster.JobStreaming}
	local := func(name, state string) node.Container {
		return node.Container{Config: node.ContainerConfig{Name: name}, State: state}
	}
	in := []node.Container{
		local("here", node.StateRunning), local("moved", node.StateRunning), local("migrating", node.StateRunning),
		local("busy", node.StateCheckpointing), local("loading", node.StateRunning), local("on-unknown", node.StateRunning),
		local("stopped-moved", node.StateStopped), local("node-local", node.StateRunning),
		local("restored-elsewhere", node.StateExited), local("restored-running", node.StateRunning),
	}
	var got []string
	for _, c := range strays(st, in, "vg-1", func(name string) bool { return name == "loading" }) {
		got = append(got, c.Config.Name)
	}
	if want := []string{"moved", "stopped-moved", "restored-elsewhere", "restored-running"}; !slices.Equal(got, want) {
		t.Fatalf("strays = %v, want %v", got, want)
	}
}
