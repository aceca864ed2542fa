package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"ztunnel.dev/kube/internal/cni"
)

// serveCNI answers the chained CNI plugin on a unix socket (0600: only root on the
// node runs CNI plugins), and installs the plugin into the node's CNI config.
func (a *Agent) serveCNI(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(a.cfg.CNISocket), 0o755); err != nil {
		return err
	}
	_ = os.Remove(a.cfg.CNISocket)
	ln, err := net.Listen("unix", a.cfg.CNISocket)
	if err != nil {
		return fmt.Errorf("listening for the CNI plugin on %s: %w", a.cfg.CNISocket, err)
	}
	if err := os.Chmod(a.cfg.CNISocket, 0o600); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/pod-event", a.handlePodEvent)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			klog.ErrorS(err, "CNI plugin endpoint")
		}
	}()
	if !a.cfg.InstallCNI {
		return nil
	}
	bin, err := cni.InstallBinary(a.cfg.CNIBinDir)
	if err != nil {
		return err
	}
	go a.keepChained(ctx, bin)
	return nil
}

// keepChained puts our plugin into the primary network config and puts it back if
// the network plugin rewrites its file (as Calico or Cilium do on restart).
func (a *Agent) keepChained(ctx context.Context, bin string) {
	reported := ""
	for {
		path, changed, err := cni.Chain(a.cfg.CNIConfDir, cni.Entry{AgentSocket: a.cfg.CNISocket, ExcludeNamespaces: a.cfg.ExcludeNamespaces})
		switch {
		case err != nil && err.Error() != reported:
			klog.ErrorS(err, "chaining the CNI plugin (new pods are not captured before they start until it works)")
			reported = err.Error()
		case err == nil && changed:
			klog.InfoS("CNI plugin chained", "config", path, "binary", bin)
			reported = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (a *Agent) handlePodEvent(w http.ResponseWriter, r *http.Request) {
	var ev cni.PodEvent
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&ev); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	reply := a.podEvent(r.Context(), ev)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply)
}

func (a *Agent) podEvent(ctx context.Context, ev cni.PodEvent) cni.PodEventReply {
	key := types.NamespacedName{Namespace: ev.PodNS, Name: ev.PodName}
	if ev.Command == "DEL" {
		a.mu.Lock()
		uid, ok := a.byKey[key]
		a.mu.Unlock()
		if ok {
			if err := a.unenroll(uid, key, "sandbox deleted"); err != nil {
				klog.ErrorS(err, "unenrolling on CNI DEL", "pod", key)
			}
		}
		return cni.PodEventReply{Reason: "deleted"}
	}
	t0 := time.Now()
	pod, err := a.podForSandbox(ctx, key, types.UID(ev.PodUID))
	if err != nil {
		return cni.PodEventReply{Error: err.Error()}
	}
	if pod.Spec.NodeName != a.cfg.NodeName {
		return cni.PodEventReply{Error: fmt.Sprintf("pod is scheduled to node %q, this agent serves %q", pod.Spec.NodeName, a.cfg.NodeName)}
	}
	d := a.wanted(pod)
	if !d.Enroll {
		return cni.PodEventReply{Reason: d.Reason}
	}
	a.mu.Lock()
	old, hadKey := a.byKey[key]
	e, enrolled := a.enrolled[pod.UID]
	staleSandbox := enrolled && e.netns != ev.Netns
	a.mu.Unlock()
	switch {
	case hadKey && old != pod.UID:
		_ = a.unenroll(old, key, "pod replaced")
	case staleSandbox:
		// A new sandbox for the same pod (the old one died): capture the new netns.
		_ = a.unenroll(pod.UID, key, "sandbox recreated")
	}
	if err := a.enrollPod(pod, ev.Netns, ev.IPs); err != nil {
		return cni.PodEventReply{Error: "ztunnel could not capture the pod: " + err.Error()}
	}
	klog.V(1).InfoS("captured at sandbox creation", "pod", key, "elapsed", time.Since(t0).Round(time.Microsecond))
	return cni.PodEventReply{Enrolled: true, Reason: d.Reason}
}

// podForSandbox is the pod from the informer, or from the API server when the
// informer has not seen it yet (the sandbox is created right after scheduling).
func (a *Agent) podForSandbox(ctx context.Context, key types.NamespacedName, uid types.UID) (*corev1.Pod, error) {
	lister := a.localPodLister
	if a.writesMeshConfig() {
		lister = a.podLister // the one the config is built from
	}
	if pod, err := lister.Pods(key.Namespace).Get(key.Name); err == nil && (uid == "" || pod.UID == uid) {
		return pod, nil
	}
	pod, err := a.client.GetPod(ctx, key.Namespace, key.Name)
	if err != nil {
		return nil, fmt.Errorf("looking up pod %s: %w", key, err)
	}
	if !a.writesMeshConfig() {
		return pod, nil
	}
	// The config is built from the informer: wait (briefly) until it has the pod.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if p, err := a.podLister.Pods(key.Namespace).Get(key.Name); err == nil && p.UID == pod.UID {
			return p, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return pod, nil
}
