package agent

import (
	"context"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"ztunnel.dev/kube/internal/cni"
)

// What a stopping agent leaves on the node (--on-exit).
const (
	// ExitAuto: in a pod, keep when the agent's DaemonSet lives on (an upgrade, a
	// restart, a node reboot) and clean up when it is gone or being deleted (an
	// uninstall); outside a pod, unchain.
	ExitAuto = "auto"
	// ExitKeep leaves the plugin chained (new pods wait for the next agent instead of
	// starting uncaptured) and every pod captured.
	ExitKeep = "keep"
	// ExitUnchain removes the plugin from the network config; pods stay captured.
	ExitUnchain = "unchain"
	// ExitCleanup removes everything of ours: every pod's capture and annotation, the
	// plugin's config entry and binary, the mesh config file.
	ExitCleanup = "cleanup"
)

// exitMode resolves ExitAuto the way istio-cni tells an upgrade from an uninstall: by
// asking whether its own DaemonSet still exists and is not being deleted. A missing
// DaemonSet, a deletion in progress, or lost rights (the release's RBAC is deleted
// with it) mean an uninstall; so does an API that does not answer, as with Istio: a
// plugin left chained with no agent to come would stop every new pod on the node.
func (a *Agent) exitMode() string {
	mode := a.cfg.OnExit
	if mode != ExitAuto && mode != "" {
		return mode
	}
	if a.cfg.PodNamespace == "" {
		return ExitUnchain
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := a.client.GetDaemonSet(ctx, a.cfg.PodNamespace, a.cfg.DaemonSetName)
	switch {
	case err == nil && ds.DeletionTimestamp == nil:
		klog.InfoS("the DaemonSet lives on (an upgrade or a restart): leaving the plugin chained and pods captured",
			"daemonset", a.cfg.PodNamespace+"/"+a.cfg.DaemonSetName)
		return ExitKeep
	case err == nil:
		klog.InfoS("the DaemonSet is being deleted (an uninstall): cleaning up", "daemonset", a.cfg.DaemonSetName)
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		klog.InfoS("the DaemonSet is gone (an uninstall): cleaning up", "daemonset", a.cfg.DaemonSetName, "why", err.Error())
	default:
		klog.ErrorS(err, "cannot tell an upgrade from an uninstall; cleaning up so no new pod waits for an agent that may never come")
	}
	return ExitCleanup
}

// onExit carries out the exit mode once the agent has stopped serving.
func (a *Agent) onExit() {
	mode := a.exitMode()
	if mode == ExitKeep {
		return
	}
	// Unchain (and cleanup, first of all: no new pod is handed to an agent that is leaving).
	if a.cfg.InstallCNI {
		if err := cni.Unchain(a.cfg.CNIConfDir); err != nil {
			klog.ErrorS(err, "removing the CNI plugin from the network config")
		}
	}
	if mode == ExitUnchain {
		return
	}
	if a.cfg.InstallCNI {
		if err := os.Remove(filepath.Join(a.cfg.CNIBinDir, cni.PluginType)); err != nil && !os.IsNotExist(err) {
			klog.ErrorS(err, "removing the CNI plugin binary")
		}
	}
	if msg, err := a.rules.Cleanup(); err != nil {
		klog.ErrorS(err, "removing the pods' capture rules")
	} else {
		klog.InfoS("capture removed", "agent", msg)
	}
	a.removeAnnotations()
	for _, f := range []string{a.cfg.MeshConfigPath, a.cfg.CNISocket, a.cfg.ZDSSocket, a.cfg.ControlSocket} {
		if f != "" {
			if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
				klog.ErrorS(err, "removing", "file", f)
			}
		}
	}
	klog.InfoS("cleaned up: no pod of this node is captured and the CNI plugin is gone")
}

// removeAnnotations takes the redirection annotation off every pod this agent
// enrolled, best effort within a few seconds: after an uninstall the release's RBAC
// may already be gone, and a post-delete sweep (`ztunnel-cni cleanup-annotations`)
// removes what is left.
func (a *Agent) removeAnnotations() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	a.mu.Lock()
	var keys []types.NamespacedName
	for _, e := range a.enrolled {
		keys = append(keys, e.key)
	}
	a.mu.Unlock()
	for _, k := range keys {
		err := a.client.MergePatchPod(ctx, k.Namespace, k.Name, redirectionPatch(false))
		if err != nil && !apierrors.IsNotFound(err) {
			klog.InfoS("could not remove the redirection annotation (the post-delete sweep will)", "pod", k, "why", err.Error())
		}
	}
}
