package meshstate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func ptr[T any](v T) *T { return &v }

func testPod(ns, name, uid, node, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: "web"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			PodIPs:     []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func inputs() Inputs {
	web := testPod("shop", "web-7d9f-abcde", "u1", "node-a", "10.244.0.5", map[string]string{"app": "web", "version": "v2", "pod-template-hash": "7d9f"})
	web.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-7d9f", Controller: ptr(true)}}
	remote := testPod("shop", "db-0", "u2", "node-b", "10.244.1.7", map[string]string{"app": "db"})
	remote.Annotations = map[string]string{"ambient.istio.io/redirection": "enabled"}
	noIP := testPod("shop", "starting", "u3", "node-a", "", nil)
	noIP.Status.PodIPs = nil
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.20"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "admin", Port: 9000, TargetPort: intstr.FromInt32(9090)},
			{Name: "metrics", Port: 9100, TargetPort: intstr.FromString("nope")},
		}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-abc",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))},
			{Name: ptr("admin"), Port: ptr(int32(9090))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.5"},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", UID: "u1"}}},
	}
	return Inputs{
		Pods: []*corev1.Pod{web, remote, noIP}, Services: []*corev1.Service{svc},
		Slices:      []*discoveryv1.EndpointSlice{slice},
		Policies:    []Policy{{Name: "web-callers", Namespace: "shop", Scope: "WorkloadSelector", Action: "Allow", Rules: [][][]Match{{{{Namespaces: []StringMatch{Exact("shop")}}}}}, Selector: map[string]string{"app": "web"}}},
		TrustDomain: "cluster.local", ClusterID: "Kubernetes", DomainSuffix: "cluster.local",
		LocalNode: "node-a", LocalEnrolled: map[types.UID]bool{"u1": true},
	}
}

func TestBuildMapsPodsServicesAndPolicies(t *testing.T) {
	cfg, problems := Build(inputs())
	if len(cfg.Workloads) != 2 {
		t.Fatalf("workloads: %+v", cfg.Workloads)
	}
	db, web := cfg.Workloads[0], cfg.Workloads[1]
	if web.UID != "Kubernetes//v1/Pod/shop/web-7d9f-abcde" || web.WorkloadName != "web" ||
		web.WorkloadType != "deployment" || web.CanonicalName != "web" || web.CanonicalRevision != "v2" ||
		web.Protocol != "HBONE" || web.Status != "Healthy" || web.ServiceAccount != "web" {
		t.Errorf("web workload: %+v", web)
	}
	if db.Protocol != "HBONE" || db.CanonicalRevision != "latest" || db.WorkloadType != "pod" {
		t.Errorf("remote pod with the redirection annotation: %+v", db)
	}
	ports := web.Services["shop/web.shop.svc.cluster.local"]
	if ports["80"] != 8080 || ports["9000"] != 9090 {
		t.Errorf("web's service ports: %v", web.Services)
	}
	if len(web.AuthorizationPolicies) != 1 || web.AuthorizationPolicies[0] != "shop/web-callers" {
		t.Errorf("selected policies: %v", web.AuthorizationPolicies)
	}
	svc := cfg.Services[0]
	if svc.VIPs[0] != "/10.96.0.20" || svc.Ports["80"] != 0 || svc.Ports["9000"] != 9090 {
		t.Errorf("service: %+v", svc)
	}
	var noIP, badPort bool
	for _, p := range problems {
		noIP = noIP || (p.Name == "starting" && p.Reason == "no IP yet" && p.Transient)
		badPort = badPort || (p.Kind == "Service" && strings.Contains(p.Reason, `port name "nope"`) && !p.Transient)
	}
	if !noIP || !badPort {
		t.Errorf("problems: %v", problems)
	}
}

func TestLocalPodsAreHboneOnlyWhenThisAgentEnrolledThem(t *testing.T) {
	in := inputs()
	in.LocalEnrolled = nil
	in.Pods[0].Annotations = map[string]string{"ambient.istio.io/redirection": "enabled"}
	cfg, _ := Build(in)
	if cfg.Workloads[1].Protocol != "TCP" {
		t.Errorf("a stale annotation on a local pod must not make it HBONE: %+v", cfg.Workloads[1])
	}
}

func TestRenderIsStable(t *testing.T) {
	a, _ := Render(mustBuild(inputs()))
	b, _ := Render(mustBuild(inputs()))
	if string(a) != string(b) {
		t.Error("the same inputs rendered differently")
	}
}

func mustBuild(in Inputs) Config { c, _ := Build(in); return c }

// The node process must accept what we write: checked with its own parser.
func TestTheNodeProcessAcceptsTheRenderedConfig(t *testing.T) {
	bin := os.Getenv("ZTUNNEL_BIN")
	if bin == "" {
		bin = "../../../build/ztunnel/app/ztunnel"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the node binary is needed (build it, or set ZTUNNEL_BIN): %v", err)
	}
	data, err := Render(mustBuild(inputs()))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mesh.json")
	if _, err := WriteAtomic(path, data); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--check-config", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ztunnel --check-config refused the rendered config: %v\n%s\n%s", err, out, data)
	}
	if changed, _ := WriteAtomic(path, data); changed {
		t.Error("unchanged content was rewritten")
	}
}
