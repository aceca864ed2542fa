package check

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestKernelRelease(t *testing.T) {
	for release, ok := range map[string]bool{"6.1.0-18-amd64": true, "6.0": true, "5.15.0-91-generic": false,
		"7.2.1": true, "6.10rc1": true, "garbage": false} {
		if r := kernelResult(release); r.OK != ok {
			t.Errorf("%s: ok=%v, want %v (%s)", release, r.OK, ok, r.Detail)
		}
	}
}

func TestIoUringErrnoNamesTheCause(t *testing.T) {
	if r := ioUringResult(unix.EPERM, "0"); r.OK || !strings.Contains(r.Detail, "seccomp") {
		t.Errorf("EPERM with the sysctl at 0: %+v", r)
	}
	if r := ioUringResult(unix.EPERM, "2"); !strings.Contains(r.Hint, "io_uring_disabled=0") {
		t.Errorf("EPERM with the sysctl at 2: %+v", r)
	}
	if r := ioUringResult(unix.ENOSYS, ""); !strings.Contains(r.Hint, "CONFIG_IO_URING") {
		t.Errorf("ENOSYS: %+v", r)
	}
}

func TestIptablesBackend(t *testing.T) {
	if r := iptablesVersionResult("iptables v1.8.9 (nf_tables)"); !r.OK {
		t.Errorf("nf_tables: %+v", r)
	}
	if r := iptablesVersionResult("iptables v1.8.9 (legacy)"); r.OK || !strings.Contains(r.Hint, "iptables-nft") {
		t.Errorf("legacy: %+v", r)
	}
	if r := iptablesVersionResult("iptables v1.4.21"); r.OK {
		t.Errorf("no backend named: %+v", r)
	}
}

func TestCapabilities(t *testing.T) {
	if r := capabilitiesResult("Name:\tx\nCapEff:\t000001ffffffffff\n"); !r.OK {
		t.Errorf("all: %+v", r)
	}
	// NET_RAW (13) and SYS_ADMIN (21) only.
	if r := capabilitiesResult("CapEff:\t0000000000202000\n"); r.OK || r.Detail != "missing CAP_NET_ADMIN" {
		t.Errorf("no NET_ADMIN: %+v", r)
	}
}

func TestNetnsPropagationFindsTheCoveringMount(t *testing.T) {
	mountinfo := strings.Join([]string{
		"22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw",
		"30 22 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw",
		"31 30 0:26 / /run/netns rw shared:9 - tmpfs tmpfs rw",
		"32 22 0:27 / /mnt/with\\040space rw - tmpfs tmpfs rw",
	}, "\n")
	if r := propagationResult("/var/run/netns", "/run/netns", mountinfo); !r.OK || !strings.Contains(r.Detail, "shared mount /run/netns") {
		t.Errorf("shared: %+v", r)
	}
	if r := propagationResult("/srv/netns", "/srv/netns", mountinfo); r.OK || !strings.Contains(r.Detail, "on the mount /,") {
		t.Errorf("private root: %+v", r)
	}
	if r := propagationResult("/mnt/with space/x", "/mnt/with space/x", mountinfo); r.OK || !strings.Contains(r.Detail, "/mnt/with space,") {
		t.Errorf("escaped mount point: %+v", r)
	}
}

func TestDaemonSetStatus(t *testing.T) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "ztunnel", Namespace: "z", Generation: 2}}
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, NumberReady: 3, UpdatedNumberScheduled: 3, ObservedGeneration: 2}
	if r := daemonSetResult(ds); !r.OK {
		t.Errorf("ready: %+v", r)
	}
	ds.Status.NumberReady = 2
	if r := daemonSetResult(ds); r.OK || r.Detail != "2 of 3 pods ready" {
		t.Errorf("one not ready: %+v", r)
	}
	ds.Status.NumberReady, ds.Status.UpdatedNumberScheduled = 3, 1
	if r := daemonSetResult(ds); r.OK || !strings.Contains(r.Detail, "rollout") {
		t.Errorf("rolling: %+v", r)
	}
}

func TestMetricValue(t *testing.T) {
	text := "# HELP x\nztunnel_inpod_connected_other 5\nztunnel_inpod_connected 1\nworkload_manager_active_proxy_count 3 1700000000\n"
	if v, ok := metricValue(text, "ztunnel_inpod_connected"); !ok || v != 1 {
		t.Errorf("connected: %v %v", v, ok)
	}
	if v, ok := metricValue(text, "workload_manager_active_proxy_count"); !ok || v != 3 {
		t.Errorf("count: %v %v", v, ok)
	}
	if _, ok := metricValue(text, "absent"); ok {
		t.Error("absent found")
	}
}

func certPEM(t *testing.T, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) ([]byte, *x509.Certificate) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert
}

func TestCAValidity(t *testing.T) {
	now := time.Now()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := func(notAfter time.Time, isCA bool) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"},
			NotBefore: now.Add(-time.Hour), NotAfter: notAfter, IsCA: isCA, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		p, _ := certPEM(t, tmpl, tmpl, key, key)
		return p
	}
	month := 30 * 24 * time.Hour
	good := ca(now.Add(10*365*24*time.Hour), true)
	if r := caResult(map[string][]byte{"ca-cert.pem": good, "root-cert.pem": good}, now, month); !r.OK {
		t.Errorf("ten years: %+v", r)
	}
	soon := ca(now.Add(24*time.Hour), true)
	if r := caResult(map[string][]byte{"ca-cert.pem": soon, "root-cert.pem": soon}, now, month); r.OK || !strings.Contains(r.Detail, "less than 30d") {
		t.Errorf("a day left: %+v", r)
	}
	if r := caResult(map[string][]byte{"ca-cert.pem": soon, "root-cert.pem": soon}, now.Add(48*time.Hour), month); r.OK || !strings.Contains(r.Detail, "expired") {
		t.Errorf("expired: %+v", r)
	}
	leaf := ca(now.Add(10*365*24*time.Hour), false)
	if r := caResult(map[string][]byte{"ca-cert.pem": leaf, "root-cert.pem": good}, now, month); r.OK || !strings.Contains(r.Detail, "not a CA") {
		t.Errorf("not a CA: %+v", r)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "other"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true}
	other, _ := certPEM(t, otherTmpl, otherTmpl, otherKey, otherKey)
	if r := caResult(map[string][]byte{"ca-cert.pem": other, "root-cert.pem": good}, now, month); r.OK || !strings.Contains(r.Detail, "does not chain to") {
		t.Errorf("foreign root: %+v", r)
	}
	if r := caResult(map[string][]byte{"root-cert.pem": good}, now, month); r.OK || !strings.Contains(r.Detail, "ca-cert.pem is missing") {
		t.Errorf("missing: %+v", r)
	}
}

func TestCAChainsThroughIntermediates(t *testing.T) {
	now := time.Now()
	mk := func(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		p, c := certPEM(t, tmpl, parent, key, parentKey)
		return p, c, key
	}
	rootPEM, root, rootKey := mk("root", nil, nil)
	midPEM, mid, midKey := mk("org CA", root, rootKey)
	caPEM, _, _ := mk("cluster CA", mid, midKey)
	chain := append(append(append([]byte{}, caPEM...), midPEM...), rootPEM...)
	data := map[string][]byte{"ca-cert.pem": caPEM, "root-cert.pem": rootPEM, "cert-chain.pem": chain}
	if r := caResult(data, now, 24*time.Hour); !r.OK {
		t.Errorf("root -> org CA -> cluster CA: %+v", r)
	}
	data["cert-chain.pem"] = caPEM // the intermediate missing
	if r := caResult(data, now, 24*time.Hour); r.OK || !strings.Contains(r.Detail, "does not chain to") {
		t.Errorf("no intermediate: %+v", r)
	}
}

func pod(ns, name string, labels, annotations map[string]string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
}

func TestEnrolledPods(t *testing.T) {
	on := map[string]string{"ambient.istio.io/redirection": "enabled"}
	nsLabels := map[string]map[string]string{"shop": {"istio.io/dataplane-mode": "ambient"}, "kube-system": {"istio.io/dataplane-mode": "ambient"}}
	excluded := map[string]bool{"kube-system": true}
	pods := []corev1.Pod{
		pod("shop", "web", nil, on),
		pod("shop", "opted-out", map[string]string{"istio.io/dataplane-mode": "none"}, nil),
		pod("kube-system", "dns", nil, nil),
		pod("plain", "tool", map[string]string{"istio.io/dataplane-mode": "ambient"}, on),
	}
	if r := enrolledResult(pods, nsLabels, excluded); !r.OK || !strings.HasPrefix(r.Detail, "2 pods in 2 namespaces") {
		t.Errorf("all enrolled: %+v", r)
	}
	pods = append(pods, pod("shop", "db", nil, nil), pod("plain", "old", nil, on))
	r := enrolledResult(pods, nsLabels, excluded)
	if r.OK || !strings.Contains(r.Detail, "1 not enrolled: shop/db (node n1)") || !strings.Contains(r.Detail, "1 annotated ambient.istio.io/redirection=enabled but not in the mesh: plain/old") {
		t.Errorf("one missing, one stale: %+v", r)
	}
}

func TestOutputs(t *testing.T) {
	results := []Result{pass("kernel", "Linux 6.1"), fail("io_uring", "blocked", "unblock it")}
	var text bytes.Buffer
	WriteText(&text, "ztunnel pre-install checks", results)
	want := "ztunnel pre-install checks\n✓ kernel: Linux 6.1\n✗ io_uring: blocked\n    hint: unblock it\n\n1 of 2 checks failed\n"
	if text.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", text.String(), want)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, results); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Checks         []Result
		Passed, Failed int
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil || doc.Passed != 1 || doc.Failed != 1 || doc.Checks[1].Hint != "unblock it" {
		t.Errorf("json %s: %+v %v", js.String(), doc, err)
	}
}

func TestIstiodModeIsSeenFromTheRootMount(t *testing.T) {
	ds := &appsv1.DaemonSet{}
	ds.Spec.Template.Spec.Volumes = []corev1.Volume{
		{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-root-cert"}}}},
		{Name: "cacerts", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cacerts"}}},
	}
	ds.Spec.Template.Spec.Containers = []corev1.Container{{Name: "istio-proxy"}}
	if got := istiodRootConfigMap(ds); got != "" {
		t.Fatalf("nothing mounted yet: got %q", got)
	}
	ds.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio"}}
	if got := istiodRootConfigMap(ds); got != "istio-ca-root-cert" {
		t.Fatalf("istiod mode: got %q", got)
	}
	if got := caSecretName(ds); got != "" {
		t.Fatalf("no /etc/cacerts mount: got %q", got)
	}
}
