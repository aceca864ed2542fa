package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"ztunnel.dev/kube/internal/enroll"
	"ztunnel.dev/kube/internal/kclient"
	"ztunnel.dev/kube/internal/rules"
)

// AuthorizationPolicyGVR is Istio's security.istio.io/v1 AuthorizationPolicy.
var AuthorizationPolicyGVR = schema.GroupVersionResource{
	Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}

// enrolledPod is one pod this agent captured.
type enrolledPod struct {
	key    types.NamespacedName
	netns  string
	served bool // the node process acked it (the config then says HBONE)
}

// Agent is one node's agent.
type Agent struct {
	cfg    Config
	client *kclient.Client
	rules  *rules.Client

	// Cluster-wide (the mesh state): pods, namespaces, services, slices; local: this
	// node's pods (spec.nodeName), for enrollment.
	podInformer, nsInformer, serviceInformer, sliceInformer cache.SharedIndexInformer
	localPodInformer                                        cache.SharedIndexInformer

	podLister       corelisters.PodLister
	localPodLister  corelisters.PodLister
	nsLister        corelisters.NamespaceLister
	serviceLister   corelisters.ServiceLister
	sliceLister     discoverylisters.EndpointSliceLister
	policies        *policyStore
	writer          *configWriter
	queue           workqueue.TypedRateLimitingInterface[types.NamespacedName]
	recorder        *kclient.Recorder
	synced          atomic.Bool
	policiesWatched atomic.Bool

	opMu       sync.Mutex // enroll/unenroll one at a time, in order
	mu         sync.Mutex // guards the maps below
	enrolled   map[types.UID]*enrolledPod
	byKey      map[types.NamespacedName]types.UID
	ipOverride map[types.UID][]string
}

// New connects to the API server (nothing is started yet).
func New(cfg Config) (*Agent, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("Kubernetes client configuration: %w (set --kubeconfig or KUBECONFIG outside a cluster)", err)
	}
	rc.UserAgent = "ztunnel-cni/" + cfg.NodeName
	client, err := kclient.New(rc)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, client: client,
		rules:      &rules.Client{Socket: cfg.ControlSocket},
		enrolled:   map[types.UID]*enrolledPod{},
		byKey:      map[types.NamespacedName]types.UID{},
		ipOverride: map[types.UID][]string{},
	}
	a.policies = newPolicyStore(a)
	a.writer = newConfigWriter(a)
	a.queue = workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](100*time.Millisecond, 10*time.Second))
	a.recorder = kclient.NewRecorder(client, "ztunnel-cni", cfg.NodeName)

	a.nsInformer = kclient.Informer(client.Core, "namespaces", &corev1.Namespace{}, nil)
	if a.writesMeshConfig() {
		// The whole cluster's pods, services and endpoints, for the node process's
		// config; a control plane (istiod) serves those itself.
		a.podInformer = kclient.Informer(client.Core, "pods", &corev1.Pod{}, nil)
		a.serviceInformer = kclient.Informer(client.Core, "services", &corev1.Service{}, nil)
		a.sliceInformer = kclient.Informer(client.Discovery, "endpointslices", &discoveryv1.EndpointSlice{}, nil)
	}
	a.localPodInformer = kclient.Informer(client.Core, "pods", &corev1.Pod{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	})
	return a, nil
}

// Run starts everything and serves until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.RulesAgentBin != "" {
		if _, err := rules.StartAgent(a.cfg.RulesAgentBin, a.cfg.ZDSSocket, a.cfg.ControlSocket,
			a.cfg.RulesAgentArgs, os.Stderr); err != nil {
			return err
		}
	}
	go a.serveHealth(ctx)

	a.localPodLister = corelisters.NewPodLister(a.localPodInformer.GetIndexer())
	a.nsLister = corelisters.NewNamespaceLister(a.nsInformer.GetIndexer())
	informers := map[string]cache.SharedIndexInformer{"namespaces": a.nsInformer,
		"this node's pods": a.localPodInformer}
	if a.writesMeshConfig() {
		a.podLister = corelisters.NewPodLister(a.podInformer.GetIndexer())
		a.serviceLister = corelisters.NewServiceLister(a.serviceInformer.GetIndexer())
		a.sliceLister = discoverylisters.NewEndpointSliceLister(a.sliceInformer.GetIndexer())
		dirty := cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { a.writer.MarkDirty() },
			UpdateFunc: func(any, any) { a.writer.MarkDirty() },
			DeleteFunc: func(any) { a.writer.MarkDirty() },
		}
		for _, inf := range []cache.SharedIndexInformer{a.podInformer, a.serviceInformer, a.sliceInformer} {
			if _, err := inf.AddEventHandler(dirty); err != nil {
				return err
			}
		}
		informers["pods"], informers["services"], informers["endpointslices"] =
			a.podInformer, a.serviceInformer, a.sliceInformer
	} else {
		klog.InfoS("no mesh config written: a control plane serves the node process (--mesh-config is empty)")
	}
	if _, err := a.localPodInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.enqueuePod(obj) },
		UpdateFunc: func(_, obj any) { a.enqueuePod(obj) },
		DeleteFunc: func(obj any) { a.enqueuePod(obj) },
	}); err != nil {
		return err
	}
	if _, err := a.nsInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { a.enqueueNamespace(obj) },
		UpdateFunc: func(old, obj any) {
			if old.(*corev1.Namespace).Labels[enroll.DataplaneModeLabel] != obj.(*corev1.Namespace).Labels[enroll.DataplaneModeLabel] {
				a.enqueueNamespace(obj)
			}
		},
	}); err != nil {
		return err
	}
	for _, inf := range informers {
		go inf.Run(ctx.Done())
	}
	if a.writesMeshConfig() {
		go a.watchPolicies(ctx)
	}

	t0 := time.Now()
	for name, inf := range informers {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return fmt.Errorf("the %s informer did not sync (API server unreachable?)", name)
		}
	}
	klog.InfoS("informers synced", "elapsed", time.Since(t0).Round(time.Millisecond))
	if err := a.restore(); err != nil {
		return err
	}
	if err := a.writer.Flush(); err != nil {
		return err
	}
	if msg, err := a.rules.Synced(); err != nil {
		return fmt.Errorf("releasing the node processes' snapshots: %w", err)
	} else {
		klog.InfoS("pod list rebuilt", "agent", msg)
	}
	a.synced.Store(true)
	if a.writesMeshConfig() {
		go a.writer.Run(ctx)
	}

	if err := a.serveCNI(ctx); err != nil {
		return err
	}
	go func() {
		for a.processNext(ctx) {
		}
	}()
	<-ctx.Done()
	a.queue.ShutDown()
	a.onExit()
	return nil
}

// writesMeshConfig says whether this agent builds the node process's config (the
// standalone mode) or only enrolls pods (a control plane serves the config).
func (a *Agent) writesMeshConfig() bool { return a.cfg.MeshConfigPath != "" }

func (a *Agent) event(kind, ns, name, reason, msg string) {
	ref := &corev1.ObjectReference{Kind: kind, Namespace: ns, Name: name}
	switch kind {
	case "Pod", "Service":
		ref.APIVersion = "v1"
	case "AuthorizationPolicy":
		ref.APIVersion = "security.istio.io/v1"
	}
	a.recorder.Event(ref, corev1.EventTypeWarning, reason, msg)
}

func (a *Agent) serveHealth(ctx context.Context) {
	if a.cfg.HealthListen == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !a.synced.Load() {
			http.Error(w, "not ready: rebuilding the pod list from the API server", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Addr: a.cfg.HealthListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		klog.ErrorS(err, "health endpoint", "listen", a.cfg.HealthListen)
	}
}
