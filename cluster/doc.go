// Package cluster is Ferry's replicated cluster state: the raft FSM and its
// typed commands, the Store that runs raft on disk and forwards writes from
// followers to the leader, gossip membership with node metadata, the
// reconciler that reflects membership into raft, and the scheduler.
//
// # Usage
//
//	store, err := cluster.Open(ctx, cluster.Config{
//		Name: "vg-1", DataDir: "/var/lib/ferry/raft", RaftBind: "10.0.0.1:7001",
//		Bootstrap: true, Forwarder: apiForwarder, Logger: logger,
//	})
//	defer store.Shutdown()
//	store.OnLeadership(func(ctx context.Context) {
//		cluster.RunReconciler(ctx, store, members, members.Events(), 5*time.Second)
//	})
//	node, err := cluster.Place(store.State(), cluster.PlacementRequest{MemoryBytes: 256 << 20})
//	_, err = store.Apply(ctx, &cluster.PlaceContainer{Container: cluster.Container{
//		Name: "np", Node: node, Image: "busybox"}})
//	if errors.Is(err, cluster.ErrExists) { ... }
//
// Tests build a whole cluster in one process with MakeTestCluster.
package cluster
