package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"ztunnel.dev/kube/internal/enroll"
	"ztunnel.dev/kube/internal/netns"
	"ztunnel.dev/kube/internal/rules"
)

func (a *Agent) enqueuePod(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		a.queue.Add(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
	}
}

func (a *Agent) enqueueNamespace(obj any) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	pods, _ := a.localPodLister.Pods(ns.Name).List(labels.Everything())
	for _, p := range pods {
		a.queue.Add(types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
	}
}

func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	if err := a.reconcile(ctx, key); err != nil {
		if a.queue.NumRequeues(key) < 20 {
			klog.V(2).InfoS("retrying", "pod", key, "reason", err)
			a.queue.AddRateLimited(key)
			return true
		}
		klog.ErrorS(err, "giving up on pod after 20 attempts (a change to it tries again)", "pod", key)
	}
	a.queue.Forget(key)
	return true
}

// wanted says whether the pod should be captured, and why (or why not).
func (a *Agent) wanted(pod *corev1.Pod) enroll.Decision {
	if slices.Contains(a.cfg.ExcludeNamespaces, pod.Namespace) {
		return enroll.Decision{Enroll: false, Reason: "namespace " + pod.Namespace + " is excluded (--exclude-namespaces)"}
	}
	var nsLabels map[string]string
	if ns, err := a.nsLister.Get(pod.Namespace); err == nil {
		nsLabels = ns.Labels
	}
	d := enroll.Decide(pod, nsLabels)
	if d.Enroll && enroll.Terminal(pod) {
		return enroll.Decision{Enroll: false, Reason: "pod terminated"}
	}
	return d
}

// reconcile brings one local pod's capture in line with its labels.
func (a *Agent) reconcile(ctx context.Context, key types.NamespacedName) error {
	pod, err := a.localPodLister.Pods(key.Namespace).Get(key.Name)
	a.mu.Lock()
	uid, had := a.byKey[key]
	a.mu.Unlock()
	if apierrors.IsNotFound(err) {
		if had {
			return a.unenroll(uid, key, "pod deleted")
		}
		return nil
	}
	if err != nil {
		return err
	}
	if had && uid != pod.UID {
		// Recreated under the same name (a StatefulSet): the old one is gone.
		if err := a.unenroll(uid, key, "pod replaced"); err != nil {
			return err
		}
		had = false
	}
	d := a.wanted(pod)
	switch {
	case d.Enroll && !had:
		ips := enroll.PodIPs(pod)
		if len(ips) == 0 {
			return nil // no sandbox yet: the CNI plugin brings it, or a status update
		}
		path, err := netns.Find(a.cfg.ProcRoot, string(pod.UID), ips)
		if err != nil {
			return fmt.Errorf("finding the network namespace: %w", err)
		}
		if err := a.enrollPod(pod, path, nil); err != nil {
			return err
		}
	case !d.Enroll && had:
		if err := a.unenroll(pod.UID, key, d.Reason); err != nil {
			return err
		}
	}
	return a.syncAnnotation(ctx, pod)
}

// enrollPod captures the pod: the config names it first (the node process needs its
// workload to serve it), then the rules agent installs the rules and every node
// process acks, then the config says HBONE so other pods tunnel to it.
func (a *Agent) enrollPod(pod *corev1.Pod, netnsPath string, ips []string) error {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	a.mu.Lock()
	if e, ok := a.enrolled[pod.UID]; ok && e.served {
		a.mu.Unlock()
		return nil
	}
	a.enrolled[pod.UID] = &enrolledPod{key: key, netns: netnsPath}
	a.byKey[key] = pod.UID
	if len(ips) > 0 {
		a.ipOverride[pod.UID] = ips
	}
	a.mu.Unlock()
	if err := a.writer.Flush(); err != nil {
		a.forget(pod.UID, key)
		return err
	}
	t0 := time.Now()
	msg, err := a.rules.Enroll(rules.Pod{UID: string(pod.UID), Netns: netnsPath, Name: pod.Name,
		Namespace: pod.Namespace, ServiceAccount: enroll.ServiceAccount(pod)})
	if err != nil {
		a.forget(pod.UID, key)
		a.writer.MarkDirty()
		klog.ErrorS(err, "enrollment failed", "pod", key)
		if errors.Is(err, rules.ErrRefused) {
			a.event("Pod", pod.Namespace, pod.Name, "ZtunnelEnrollFailed", err.Error())
		}
		return err
	}
	a.mu.Lock()
	if e, ok := a.enrolled[pod.UID]; ok {
		e.served = true
	}
	a.mu.Unlock()
	a.writer.MarkDirty()
	klog.InfoS("pod enrolled", "pod", key, "uid", pod.UID, "netns", netnsPath,
		"elapsed", time.Since(t0).Round(time.Microsecond), "agent", msg)
	a.queue.Add(key) // writes the annotation
	return nil
}

func (a *Agent) forget(uid types.UID, key types.NamespacedName) {
	a.mu.Lock()
	delete(a.enrolled, uid)
	if a.byKey[key] == uid {
		delete(a.byKey, key)
	}
	delete(a.ipOverride, uid)
	a.mu.Unlock()
}

// unenroll removes the capture; the node processes drain the pod's connections.
func (a *Agent) unenroll(uid types.UID, key types.NamespacedName, why string) error {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	msg, err := a.rules.Unenroll(string(uid))
	if err != nil && !strings.Contains(err.Error(), "no enrolled pod with uid") {
		return err
	}
	a.forget(uid, key)
	a.writer.MarkDirty()
	klog.InfoS("pod unenrolled", "pod", key, "uid", uid, "reason", why, "agent", msg)
	return nil
}

// syncAnnotation writes or removes ambient.istio.io/redirection to match.
func (a *Agent) syncAnnotation(ctx context.Context, pod *corev1.Pod) error {
	a.mu.Lock()
	e, ok := a.enrolled[pod.UID]
	served := ok && e.served
	a.mu.Unlock()
	has := pod.Annotations[enroll.RedirectionAnnotation] == enroll.RedirectionEnabled
	if served == has || enroll.Terminal(pod) {
		return nil
	}
	err := a.client.MergePatchPod(ctx, pod.Namespace, pod.Name, redirectionPatch(served))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// redirectionPatch is the merge patch that sets (enabled) or removes the pod's
// redirection annotation.
func redirectionPatch(enabled bool) []byte {
	var value any
	if enabled {
		value = enroll.RedirectionEnabled
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{enroll.RedirectionAnnotation: value}}})
	return patch
}

// restore rebuilds the pod list after a (re)start: every local pod that should be
// captured is enrolled again from its netns (the rules are installed idempotently),
// or kept when its netns cannot be found yet, before any node process hears a
// snapshot.
func (a *Agent) restore() error {
	pods, err := a.localPodLister.List(labels.Everything())
	if err != nil {
		return err
	}
	var found, kept int
	for _, pod := range pods {
		if !a.wanted(pod).Enroll {
			continue
		}
		ips := enroll.PodIPs(pod)
		if len(ips) == 0 {
			continue // not started: the CNI plugin will bring it
		}
		key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
		path, err := netns.Find(a.cfg.ProcRoot, string(pod.UID), ips)
		if err != nil {
			if _, kerr := a.rules.Keep(string(pod.UID)); kerr != nil {
				return kerr
			}
			klog.InfoS("pod kept until its network namespace is found", "pod", key, "reason", err)
			kept++
			a.queue.Add(key)
			continue
		}
		if err := a.enrollPod(pod, path, nil); err != nil {
			klog.ErrorS(err, "re-enrolling pod after restart", "pod", key)
			a.queue.Add(key)
			continue
		}
		found++
	}
	klog.InfoS("restored enrolled pods", "enrolled", found, "kept", kept)
	return nil
}

// watchPolicies starts the AuthorizationPolicy informer once the CRD exists (it
// may be installed after the agent starts).
func (a *Agent) watchPolicies(ctx context.Context) {
	for {
		served, err := a.client.ServesResource(ctx, AuthorizationPolicyGVR)
		if served {
			break
		}
		if err == nil {
			err = fmt.Errorf("%s is not served", AuthorizationPolicyGVR.GroupResource())
		}
		if !a.policiesWatched.Load() {
			klog.InfoS("AuthorizationPolicy is not served (CRD not installed?): no policies until it is", "reason", err)
			a.policiesWatched.Store(true)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
	policies := a.client.Dynamic.Resource(AuthorizationPolicyGVR)
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return policies.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return policies.Watch(ctx, o)
		},
	}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.policies.Upsert,
		UpdateFunc: func(_, obj any) { a.policies.Upsert(obj) },
		DeleteFunc: a.policies.Delete,
	})
	go inf.Run(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
	klog.InfoS("watching AuthorizationPolicies")
}
