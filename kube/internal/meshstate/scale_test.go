package meshstate

import (
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// scaleInputs is a cluster of `pods` pods behind `services` services (pods spread
// evenly, one EndpointSlice each), half of them on this node and enrolled.
func scaleInputs(pods, services int) Inputs {
	in := inputs()
	in.Pods, in.Services, in.Slices = nil, nil, nil
	in.LocalEnrolled = map[types.UID]bool{}
	slices := make([]*discoveryv1.EndpointSlice, services)
	for s := 0; s < services; s++ {
		name := fmt.Sprintf("svc-%d", s)
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: corev1.ServiceSpec{ClusterIPs: []string{fmt.Sprintf("10.96.%d.%d", s/250, s%250+1)},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
		})
		slices[s] = &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name + "-x",
				Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
		}
	}
	for i := 0; i < pods; i++ {
		node := "node-a"
		if i%2 == 1 {
			node = "node-b"
		}
		uid := fmt.Sprintf("uid-%d", i)
		ip := fmt.Sprintf("10.%d.%d.%d", 40+i/65000, (i/250)%250, i%250+1)
		p := testPod("shop", fmt.Sprintf("web-%d", i), uid, node, ip, map[string]string{"app": fmt.Sprintf("svc-%d", i%services)})
		in.Pods = append(in.Pods, p)
		if node == "node-a" {
			in.LocalEnrolled[p.UID] = true
		}
		sl := slices[i%services]
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", UID: p.UID}})
	}
	in.Slices = slices
	return in
}

// BenchmarkBuildAndRender1000Pods100Services is the cost of one config write at the
// size the issue names. ZTUNNEL_SCALE_CONFIG_OUT=path also leaves the file there (for
// the node process's parser: bench/kube times it).
func BenchmarkBuildAndRender1000Pods100Services(b *testing.B) {
	in := scaleInputs(1000, 100)
	var data []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		cfg, _ := Build(in)
		var err error
		if data, err = Render(cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "bytes/file")
	if out := os.Getenv("ZTUNNEL_SCALE_CONFIG_OUT"); out != "" {
		if _, err := WriteAtomic(out, data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestScaleInputsBuild(t *testing.T) {
	cfg, problems := Build(scaleInputs(1000, 100))
	if len(cfg.Workloads) != 1000 || len(cfg.Services) != 100 || len(problems) != 0 {
		t.Fatalf("%d workloads, %d services, problems %v", len(cfg.Workloads), len(cfg.Services), problems)
	}
	if got := cfg.Workloads[0].Services; len(got) != 1 {
		t.Errorf("each pod is an endpoint of one service: %v", got)
	}
}
