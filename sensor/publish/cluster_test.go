package publish

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// clusterNode is one server of a three-node cluster on loopback.
type clusterNode struct {
	name       string
	opts       *server.Options
	srv        *server.Server
	clientPort int
}

func (n *clusterNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	o := *n.opts // NewServer keeps and changes its options
	s, err := server.NewServer(&o)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	s.Start()
	if !s.ReadyForConnections(guard) {
		t.Fatalf("%s not ready", n.name)
	}
	n.srv = s
}

func (n *clusterNode) kill() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// startCluster starts three JetStream servers, each with a cluster block
// naming the other two, on random loopback ports, stores in t.TempDir().
func startCluster(t *testing.T) []*clusterNode {
	t.Helper()
	nodes := make([]*clusterNode, 3)
	cports := []int{testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)}
	for i := range nodes {
		var routes []string
		for j, p := range cports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		n := &clusterNode{name: fmt.Sprintf("n%d", i+1), clientPort: testenv.FreePort(t)}
		n.opts = &server.Options{
			ServerName: n.name, Host: "127.0.0.1", Port: n.clientPort, NoSigs: true, NoLog: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "drift", Host: "127.0.0.1", Port: cports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		nodes[i] = n
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.start(t) }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range nodes {
			n.kill()
		}
	})
	return nodes
}

func clusterURLs(nodes []*clusterNode) string {
	var u []string
	for _, n := range nodes {
		u = append(u, n.url())
	}
	return strings.Join(u, ",")
}

func nodeNamed(nodes []*clusterNode, name string) *clusterNode {
	for _, n := range nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// streamLeader asks the cluster which node leads the findings stream and
// whether all three replicas are current.
func streamLeader(ctx context.Context, js jetstream.JetStream) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := js.Stream(ctx, event.StreamName)
	if err != nil {
		return "", false
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return "", false
	}
	all := len(info.Cluster.Replicas) == 2
	for _, r := range info.Cluster.Replicas {
		all = all && r.Current && !r.Offline
	}
	return info.Cluster.Leader, all
}

// On a real three-node cluster with the stream and the bucket at three
// replicas, the stream's leader is killed mid-stream, brought back, and then
// the node the sensor is connected to is killed: every finding the sensor
// accepted arrives exactly once (by id), in the host's order.
func TestClusterNodeKillsMidStream(t *testing.T) {
	nodes := startCluster(t)
	urls := clusterURLs(nodes)
	admin, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctl, err := control.New(admin, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "driftctl init at three replicas", func() bool {
		_, err := ctl.Init(context.Background(), transport.Settings{Replicas: 3})
		return err == nil
	})
	js, _ := jetstream.New(admin)
	for _, name := range []string{event.StreamName, event.AuditStream, "KV_" + event.StateBucket} {
		s, err := js.Stream(context.Background(), name)
		if err != nil || s.CachedInfo().Config.Replicas != 3 {
			t.Fatalf("%s: %v, want three replicas", name, err)
		}
	}
	eventually(t, "a stream leader with every replica current", func() bool { _, ok := streamLeader(context.Background(), js); return ok })

	p := newPublisher(t, urls, "cl1", t.TempDir(), transport.Options{AckTimeout: 2 * time.Second})
	var states applied
	p.WatchState(context.Background(), states.fn)
	var mu sync.Mutex
	var accepted []string
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(accepted) }
	stop := make(chan struct{})
	done := make(chan error, 1)
	// hold pauses the producer: findings made while the spool drains land
	// behind it, so a producer faster than the drain (a loaded machine, three
	// replicas to ack) would keep the sensor spooling for as long as it runs.
	var hold sync.RWMutex
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			hold.RLock()
			// Single findings, acked batches and queued batches (the
			// daemon's path) take turns: every path keeps the guarantee.
			evs := []*event.Event{finding(i)}
			var err error
			switch i % 3 {
			case 0:
				err = p.Publish(evs[0])
			case 1:
				evs = append(evs, finding(i), finding(i))
				_, err = p.PublishBatch(evs)
			default:
				evs = append(evs, finding(i), finding(i))
				_, err = p.Enqueue(evs, nil)
			}
			hold.RUnlock()
			if err != nil {
				done <- fmt.Errorf("finding lost (not even spooled): %w", err)
				return
			}
			mu.Lock()
			for _, ev := range evs {
				accepted = append(accepted, ev.ID)
			}
			mu.Unlock()
		}
	}()
	progress := func(what string, n int) {
		t.Helper()
		from := count()
		eventually(t, fmt.Sprintf("%d more findings accepted %s", n, what), func() bool { return count() >= from+n })
	}
	progress("before the first kill", 300)

	leader, _ := streamLeader(context.Background(), js)
	ln := nodeNamed(nodes, leader)
	if ln == nil {
		t.Fatalf("stream leader %q is not one of ours", leader)
	}
	t.Logf("killing the stream leader %s (the sensor is on %s)", leader, p.Conn().ConnectedServerName())
	ln.kill()
	progress("after the leader was killed", 300)
	hold.Lock()
	eventually(t, "published directly again after the leader's death", func() bool { return p.Transport() == event.TransportJetStream && p.Counters().SpoolDepth == 0 })
	hold.Unlock()
	ln.start(t)
	eventually(t, "the restarted node current again", func() bool { _, ok := streamLeader(context.Background(), js); return ok })
	progress("after the leader came back", 300)

	own := nodeNamed(nodes, p.Conn().ConnectedServerName())
	if own == nil {
		t.Fatalf("the sensor is on %q", p.Conn().ConnectedServerName())
	}
	t.Logf("killing the sensor's own node %s", own.name)
	own.kill()
	progress("after the sensor's own node was killed", 300)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the queue and the spool drained", func() bool { return drained(p) })

	mu.Lock()
	ids := append([]string(nil), accepted...)
	mu.Unlock()
	reader := connect(t, strings.Join([]string{nodes[0].url(), nodes[1].url(), nodes[2].url()}, ","))
	var got []event.Event
	eventually(t, "every accepted finding readable", func() bool {
		got = streamFindings(t, reader, "cl1")
		return len(got) >= len(ids)
	})
	// A leader's death can lose a finding in flight while later ones,
	// sent before its ack was overdue, reach the new leader; sent again,
	// it lands after them (README, Transport). Only the unacked window can
	// overtake it.
	late := checkExactlyOnce(t, got, ids, flightWindow)
	if len(got) != len(ids) {
		t.Fatalf("%d findings in the stream, %d accepted", len(got), len(ids))
	}
	// The state bucket, at three replicas too, still reaches the sensor.
	mark := states.count()
	setState(t, ctl, "cl1", event.StateCordoned)
	states.waitApplied(t, mark, event.StateCordoned)
	t.Logf("%d findings, exactly once, %d after later ones, across two node kills (publish errors %d, spooled %d)", len(ids), late, p.Counters().PublishErrors, p.Counters().Spooled)
}
