package enroll

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(labels map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func TestDecideFollowsIstioAmbient(t *testing.T) {
	ambient := map[string]string{DataplaneModeLabel: ModeAmbient}
	cases := []struct {
		name   string
		pod    *corev1.Pod
		ns     map[string]string
		enroll bool
	}{
		{"namespace labelled", pod(nil), ambient, true},
		{"namespace unlabelled", pod(nil), nil, false},
		{"namespace other value", pod(nil), map[string]string{DataplaneModeLabel: "sidecar"}, false},
		{"pod labelled in unlabelled namespace", pod(ambient), nil, true},
		{"pod opts out of labelled namespace", pod(map[string]string{DataplaneModeLabel: ModeNone}), ambient, false},
		{"pod with another value follows the namespace", pod(map[string]string{DataplaneModeLabel: "x"}), ambient, true},
		{"host network", pod(ambient, func(p *corev1.Pod) { p.Spec.HostNetwork = true }), ambient, false},
		{"sidecar", pod(nil, func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy"})
		}), ambient, false},
		{"native sidecar", pod(nil, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy"}}
		}), ambient, false},
	}
	for _, c := range cases {
		d := Decide(c.pod, c.ns)
		if d.Enroll != c.enroll {
			t.Errorf("%s: Decide = %v (%s), want %v", c.name, d.Enroll, d.Reason, c.enroll)
		}
		if d.Reason == "" {
			t.Errorf("%s: no reason", c.name)
		}
	}
}

func TestTerminal(t *testing.T) {
	if Terminal(pod(nil)) {
		t.Error("a pending pod is not terminal")
	}
	done := pod(nil, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	if !Terminal(done) {
		t.Error("a succeeded pod is terminal")
	}
	gone := pod(nil, func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now })
	if Terminal(gone) {
		t.Error("a pod shutting down keeps its capture until it is gone")
	}
}
