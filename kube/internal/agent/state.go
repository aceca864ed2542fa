package agent

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"ztunnel.dev/kube/internal/meshstate"
)

// configWriter rebuilds the node process's config from the listers and writes it
// when it changed: debounced after informer events, at once when an enrollment
// needs the pod in the config before the node process hears of it.
type configWriter struct {
	a       *Agent
	dirty   chan struct{}
	mu      sync.Mutex      // one build+write at a time
	reports map[string]bool // "kind/ns/name\x00reason" reported and still true
	writes  uint64
}

func newConfigWriter(a *Agent) *configWriter {
	return &configWriter{a: a, dirty: make(chan struct{}, 1), reports: map[string]bool{}}
}

// MarkDirty schedules a rebuild.
func (w *configWriter) MarkDirty() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// Run writes rebuilds until ctx ends: at once for a change after a quiet period (a
// policy edit reaches the node without waiting), and at most once per Debounce
// during a burst (a rollout touches many objects; each write costs the node process
// a full parse).
func (w *configWriter) Run(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.dirty:
		}
		if wait := w.a.cfg.Debounce - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		// Events that arrived meanwhile are in this write.
		select {
		case <-w.dirty:
		default:
		}
		last = time.Now()
		if err := w.Flush(); err != nil {
			klog.ErrorS(err, "writing the mesh config failed; retrying")
			time.AfterFunc(time.Second, w.MarkDirty)
		}
	}
}

// Flush builds and writes the config now.
func (w *configWriter) Flush() error {
	if w.a.cfg.MeshConfigPath == "" {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	in := w.a.inputs()
	cfg, problems := meshstate.Build(in)
	// Only objects with a problem now are remembered: a pod that is gone leaves no
	// trace, one whose problem comes back is reported again.
	seen := make(map[string]bool, len(problems))
	for _, p := range problems {
		w.report(p, seen)
	}
	w.reports = seen
	data, err := meshstate.Render(cfg)
	if err != nil {
		return err
	}
	changed, err := meshstate.WriteAtomic(w.a.cfg.MeshConfigPath, data)
	if err != nil {
		return err
	}
	if changed {
		w.writes++
		klog.V(2).InfoS("wrote the mesh config", "path", w.a.cfg.MeshConfigPath,
			"workloads", len(cfg.Workloads), "services", len(cfg.Services), "policies", len(cfg.Policies))
	}
	return nil
}

// report logs a problem once per object and reason (and records an Event for those
// a user must fix); `seen` collects this build's problems.
func (w *configWriter) report(p meshstate.Problem, seen map[string]bool) {
	key := p.Kind + "/" + p.Namespace + "/" + p.Name
	seen[key+"\x00"+p.Reason] = true
	if w.reports[key+"\x00"+p.Reason] {
		return
	}
	if p.Transient {
		// Expected for a moment (a pod without an IP yet) or for good (host network):
		// one line, no Event.
		klog.InfoS("not in the mesh config", "object", key, "reason", p.Reason)
		return
	}
	klog.InfoS("object used only in part", "object", key, "reason", p.Reason)
	w.a.event(p.Kind, p.Namespace, p.Name, "ZtunnelConfig", p.Reason)
}

// inputs snapshots the listers and this agent's enrollments.
func (a *Agent) inputs() meshstate.Inputs {
	pods, _ := a.podLister.List(labels.Everything())
	services, _ := a.serviceLister.List(labels.Everything())
	slices, _ := a.sliceLister.List(labels.Everything())
	a.mu.Lock()
	enrolled := make(map[types.UID]bool, len(a.enrolled))
	for uid, e := range a.enrolled {
		enrolled[uid] = e.served
	}
	override := make(map[types.UID][]string, len(a.ipOverride))
	for uid, ips := range a.ipOverride {
		override[uid] = ips
	}
	a.mu.Unlock()
	return meshstate.Inputs{
		Pods: pods, Services: services, Slices: slices, Policies: a.policies.List(),
		TrustDomain: a.cfg.TrustDomain, ClusterID: a.cfg.ClusterID, DomainSuffix: a.cfg.DomainSuffix,
		RootNamespace: a.cfg.RootNamespace,
		LocalNode:     a.cfg.NodeName, LocalEnrolled: enrolled, IPOverride: override,
	}
}
