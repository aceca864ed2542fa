package check

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"ztunnel.dev/kube/internal/enroll"
	"ztunnel.dev/kube/internal/kclient"
)

// The chart's fixed object names.
const (
	nodeDaemonSet  = "ztunnel"
	agentDaemonSet = "ztunnel-cni"
	configMapName  = "ztunnel-config"
	caMountPath    = "/etc/cacerts"
	// istiodRootMountPath is where the chart mounts istio-ca-root-cert with istiod.
	istiodRootMountPath = "/var/run/secrets/istio"
	metricsPort         = "15020"
)

// cluster is a connected client; nil when the API server is unreachable.
type cluster struct {
	client *kclient.Client
}

// connect builds a client from the kubeconfig and asks the API server its version.
func connect(ctx context.Context, o Options) (*cluster, Result) {
	const name = "API server"
	rc, err := restConfig(o.Kubeconfig)
	if err != nil {
		return nil, fail(name, err.Error(), "name a kubeconfig with --kubeconfig or KUBECONFIG")
	}
	rc.Timeout = o.Timeout
	client, err := kclient.New(rc)
	if err != nil {
		return nil, fail(name, err.Error(), "")
	}
	v, err := client.ServerVersion(ctx)
	if err != nil {
		return nil, fail(name, fmt.Sprintf("%s: %v", rc.Host, err),
			"is the API server up and the kubeconfig's server address right? (kubectl version says the same)")
	}
	return &cluster{client: client}, pass(name, fmt.Sprintf("Kubernetes %s at %s", v.GitVersion, rc.Host))
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" && os.Getenv("KUBECONFIG") == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return rest.InClusterConfig()
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return rc, nil
}

// postInstall runs the checks of a running mesh; without a client each one fails
// saying so (a check that could not run is not a pass).
func (c *cluster) postInstall(ctx context.Context, o Options) []Result {
	names := []string{"DaemonSet " + nodeDaemonSet, "DaemonSet " + agentDaemonSet, "agent connected",
		"CA certificate", "pods enrolled"}
	if c == nil {
		out := make([]Result, len(names))
		for i, n := range names {
			out[i] = fail(n, "not run: the API server is unreachable", "")
		}
		return out
	}
	node, nodeResult := c.daemonSet(ctx, o.Namespace, nodeDaemonSet)
	_, agentResult := c.daemonSet(ctx, o.Namespace, agentDaemonSet)
	return []Result{nodeResult, agentResult, c.agentConnected(ctx, o.Namespace, node),
		c.caCertificate(ctx, o, node), c.podsEnrolled(ctx, o.Namespace)}
}

func (c *cluster) daemonSet(ctx context.Context, ns, name string) (*appsv1.DaemonSet, Result) {
	check := "DaemonSet " + name
	ds, err := c.client.GetDaemonSet(ctx, ns, name)
	if apierrors.IsNotFound(err) {
		return nil, fail(check, fmt.Sprintf("not found in namespace %s", ns),
			"install the chart: helm install ztunnel helm/ztunnel -n "+ns+" --create-namespace (or name its namespace with --namespace)")
	}
	if err != nil {
		return nil, fail(check, err.Error(), "")
	}
	return ds, daemonSetResult(ds)
}

func daemonSetResult(ds *appsv1.DaemonSet) Result {
	check := "DaemonSet " + ds.Name
	s := ds.Status
	hint := fmt.Sprintf("kubectl -n %s describe daemonset %s; kubectl -n %s get pods -o wide", ds.Namespace, ds.Name, ds.Namespace)
	switch {
	case s.DesiredNumberScheduled == 0:
		return fail(check, "scheduled on no node", "its nodeSelector or tolerations match no node: "+hint)
	case s.ObservedGeneration < ds.Generation:
		return fail(check, "the controller has not seen the latest spec yet", "retry in a few seconds")
	case s.NumberReady < s.DesiredNumberScheduled:
		return fail(check, fmt.Sprintf("%d of %d pods ready", s.NumberReady, s.DesiredNumberScheduled), hint)
	case s.UpdatedNumberScheduled < s.DesiredNumberScheduled:
		return fail(check, fmt.Sprintf("%d of %d pods updated (a rollout is under way)", s.UpdatedNumberScheduled, s.DesiredNumberScheduled),
			"kubectl -n "+ds.Namespace+" rollout status daemonset/"+ds.Name)
	}
	return pass(check, fmt.Sprintf("%d of %d pods ready and up to date", s.NumberReady, s.DesiredNumberScheduled))
}

// agentConnected reads each node process's metrics through the API server's pod
// proxy: ztunnel_inpod_connected is 1 once it has the agent's snapshot over ZDS.
func (c *cluster) agentConnected(ctx context.Context, ns string, ds *appsv1.DaemonSet) Result {
	const check = "agent connected"
	if ds == nil {
		return fail(check, "not run: no DaemonSet "+nodeDaemonSet, "")
	}
	pods, err := c.podsOf(ctx, ds)
	if err != nil {
		return fail(check, err.Error(), "")
	}
	if len(pods) == 0 {
		return fail(check, "no running "+nodeDaemonSet+" pod", "")
	}
	var good, bad []string
	for _, p := range pods {
		raw, err := c.client.PodProxyGet(ctx, ns, p.Name, metricsPort, "stats/prometheus")
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s (node %s): metrics unreadable: %v", p.Name, p.Spec.NodeName, err))
			continue
		}
		text := string(raw)
		connected, ok := metricValue(text, "ztunnel_inpod_connected")
		serving, _ := metricValue(text, "workload_manager_active_proxy_count")
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s (node %s) exports no ztunnel_inpod_connected: an older ztunnel image?", p.Name, p.Spec.NodeName))
		case connected != 1:
			bad = append(bad, fmt.Sprintf("%s (node %s) has no ZDS connection to the agent", p.Name, p.Spec.NodeName))
		default:
			good = append(good, fmt.Sprintf("%s (%g pods)", p.Spec.NodeName, serving))
		}
	}
	if len(bad) > 0 {
		return fail(check, strings.Join(bad, "; "),
			"the node process connects to the agent's socket INPOD_UDS (/var/run/ztunnel/ztunnel.sock, a hostPath both pods mount): see kubectl -n "+ns+" logs of both pods on that node")
	}
	return pass(check, "node processes have the agent's snapshot on "+strings.Join(good, ", "))
}

// metricValue finds an unlabelled sample `name value` in Prometheus text.
func metricValue(text, name string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		return v, err == nil
	}
	return 0, false
}

func (c *cluster) podsOf(ctx context.Context, ds *appsv1.DaemonSet) ([]corev1.Pod, error) {
	selector := labels.SelectorFromSet(ds.Spec.Selector.MatchLabels).String()
	list, err := c.client.ListPods(ctx, ds.Namespace, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of %s: %w", ds.Name, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// caCertificate checks the CA the node process signs workload certificates with:
// the Secret mounted at /etc/cacerts in Istio's plug-in layout.
func (c *cluster) caCertificate(ctx context.Context, o Options, ds *appsv1.DaemonSet) Result {
	const check = "CA certificate"
	if o.CASecret == "" && ds != nil && istiodRootConfigMap(ds) != "" {
		// Certificates come from istiod's CA: there is no cluster CA of ours to check,
		// but the node process needs the root istiod publishes.
		cm := istiodRootConfigMap(ds)
		got, err := c.client.GetConfigMap(ctx, o.Namespace, cm)
		if err != nil {
			return fail(check, fmt.Sprintf("certificates from istiod, but ConfigMap %s/%s: %v", o.Namespace, cm, err),
				"istiod publishes istio-ca-root-cert in every namespace it watches: is istiod running (with PILOT_ENABLE_AMBIENT=true)?")
		}
		if _, ok := got.Data["root-cert.pem"]; !ok {
			return fail(check, fmt.Sprintf("ConfigMap %s/%s has no root-cert.pem", o.Namespace, cm), "it is istiod's: let istiod rewrite it")
		}
		return pass(check, fmt.Sprintf("certificates from istiod's CA; its root is in ConfigMap %s/%s", o.Namespace, cm))
	}
	name := o.CASecret
	if name == "" && ds != nil {
		name = caSecretName(ds)
	}
	if name == "" {
		return fail(check, "not run: no CA Secret named (no DaemonSet "+nodeDaemonSet+" mounting "+caMountPath+")", "name it with --ca-secret")
	}
	secret, err := c.client.GetSecret(ctx, o.Namespace, name)
	if err != nil {
		return fail(check, fmt.Sprintf("Secret %s/%s: %v", o.Namespace, name, err),
			"the chart generates it on install (ca.generate) or you bring your own in Istio's layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)")
	}
	r := caResult(secret.Data, time.Now(), o.CertMinValidity)
	r.Detail = fmt.Sprintf("Secret %s/%s: %s", o.Namespace, name, r.Detail)
	return r
}

// istiodRootConfigMap names the ConfigMap mounted where the node process reads
// istiod's root (the chart's xdsAddress/caAddress mode), or "".
func istiodRootConfigMap(ds *appsv1.DaemonSet) string {
	volumes := map[string]string{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			volumes[v.Name] = v.ConfigMap.Name
		}
	}
	for _, ctr := range ds.Spec.Template.Spec.Containers {
		for _, m := range ctr.VolumeMounts {
			if m.MountPath == istiodRootMountPath && volumes[m.Name] != "" {
				return volumes[m.Name]
			}
		}
	}
	return ""
}

func caSecretName(ds *appsv1.DaemonSet) string {
	volumes := map[string]string{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			volumes[v.Name] = v.Secret.SecretName
		}
	}
	for _, ctr := range ds.Spec.Template.Spec.Containers {
		for _, m := range ctr.VolumeMounts {
			if m.MountPath == caMountPath && volumes[m.Name] != "" {
				return volumes[m.Name]
			}
		}
	}
	return ""
}

// caResult checks the signing certificate and the root: parseable, in their validity
// window with at least minValidity left, the signing one a CA that chains to the root.
func caResult(data map[string][]byte, now time.Time, minValidity time.Duration) Result {
	const check = "CA certificate"
	renew := "renew it before it expires: put a new CA in the Secret (Istio's plug-in layout) and roll the DaemonSets, or, for a generated one, delete the Secret and helm upgrade (workload certificates are reissued, a new root needs every node to have it)"
	certs := map[string]*x509.Certificate{}
	for _, key := range []string{"ca-cert.pem", "root-cert.pem"} {
		block, _ := pem.Decode(data[key])
		if block == nil {
			return fail(check, key+" is missing or not PEM", "the Secret must hold ca-cert.pem, ca-key.pem, root-cert.pem (and cert-chain.pem)")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fail(check, key+": "+err.Error(), "")
		}
		certs[key] = cert
	}
	ca, root := certs["ca-cert.pem"], certs["root-cert.pem"]
	if !ca.IsCA {
		return fail(check, "ca-cert.pem is not a CA certificate", "it must have basicConstraints CA:TRUE")
	}
	soonest := ca.NotAfter
	for _, key := range []string{"ca-cert.pem", "root-cert.pem"} {
		cert := certs[key]
		switch {
		case now.Before(cert.NotBefore):
			return fail(check, fmt.Sprintf("%s is not valid before %s", key, cert.NotBefore.UTC().Format(time.RFC3339)), "check the node clocks, or the certificate's dates")
		case !now.Before(cert.NotAfter):
			return fail(check, fmt.Sprintf("%s expired %s", key, cert.NotAfter.UTC().Format(time.RFC3339)), renew)
		case cert.NotAfter.Sub(now) < minValidity:
			return fail(check, fmt.Sprintf("%s expires %s, in %s (less than %s)", key, cert.NotAfter.UTC().Format(time.RFC3339),
				roundDuration(cert.NotAfter.Sub(now)), roundDuration(minValidity)), renew)
		}
		if cert.NotAfter.Before(soonest) {
			soonest = cert.NotAfter
		}
	}
	// The signing CA must chain to the root, through cert-chain.pem's intermediates
	// when it is not the root itself (Istio's plug-in layout).
	if !ca.Equal(root) {
		roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(root)
		for rest := data["cert-chain.pem"]; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if cert, err := x509.ParseCertificate(block.Bytes); err == nil && !cert.Equal(ca) {
				intermediates.AddCert(cert)
			}
		}
		_, err := ca.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return fail(check, "ca-cert.pem does not chain to root-cert.pem (with cert-chain.pem's intermediates): "+err.Error(),
				"cert-chain.pem must hold ca-cert.pem's chain up to the root, as in Istio's plug-in layout")
		}
	}
	return pass(check, fmt.Sprintf("%q valid until %s (%s left)", ca.Subject.CommonName,
		soonest.UTC().Format(time.RFC3339), roundDuration(soonest.Sub(now))))
}

func roundDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return d.Round(time.Minute).String()
}

// podsEnrolled lists every running pod the mesh should hold (Istio's rules, less the
// agent's excluded namespaces) and checks each carries the redirection annotation,
// and that no other pod does.
func (c *cluster) podsEnrolled(ctx context.Context, ns string) Result {
	const check = "pods enrolled"
	// The agent's own list (the release's ConfigMap), plus its namespace; the chart's
	// default when the release is not installed.
	excluded := map[string]bool{ns: true}
	cm, err := c.client.GetConfigMap(ctx, ns, configMapName)
	switch {
	case err == nil:
		for _, n := range strings.Split(cm.Data["EXCLUDE_NAMESPACES"], ",") {
			if n = strings.TrimSpace(n); n != "" {
				excluded[n] = true
			}
		}
	case apierrors.IsNotFound(err):
		excluded["kube-system"] = true
	default:
		return fail(check, fmt.Sprintf("reading ConfigMap %s/%s (the excluded namespaces): %v", ns, configMapName, err), "")
	}
	nsList, err := c.client.ListNamespaces(ctx)
	if err != nil {
		return fail(check, "listing namespaces: "+err.Error(), "")
	}
	nsLabels := map[string]map[string]string{}
	for _, n := range nsList.Items {
		nsLabels[n.Name] = n.Labels
	}
	var pods []corev1.Pod
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.client.ListPods(ctx, "", opts)
		if err != nil {
			return fail(check, "listing pods: "+err.Error(), "")
		}
		pods = append(pods, list.Items...)
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	return enrolledResult(pods, nsLabels, excluded)
}

func enrolledResult(pods []corev1.Pod, nsLabels map[string]map[string]string, excluded map[string]bool) Result {
	const check = "pods enrolled"
	var missing, stale []string
	enrolled := 0
	namespaces := map[string]bool{}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		want := !excluded[p.Namespace] && enroll.Decide(p, nsLabels[p.Namespace]).Enroll
		has := p.Annotations[enroll.RedirectionAnnotation] == enroll.RedirectionEnabled
		id := p.Namespace + "/" + p.Name + " (node " + p.Spec.NodeName + ")"
		switch {
		case want && has:
			enrolled++
			namespaces[p.Namespace] = true
		case want:
			missing = append(missing, id)
		case has:
			stale = append(stale, id)
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d not enrolled: %s", len(missing), firstFew(missing)))
	}
	if len(stale) > 0 {
		problems = append(problems, fmt.Sprintf("%d annotated %s=%s but not in the mesh: %s", len(stale),
			enroll.RedirectionAnnotation, enroll.RedirectionEnabled, firstFew(stale)))
	}
	if len(problems) > 0 {
		return fail(check, strings.Join(problems, "; "),
			"the agent on the pod's node enrolls it (kubectl -n <release namespace> logs of its ztunnel-cni pod; kubectl get events --field-selector reason=ZtunnelEnrollFailed); without an agent, no pod is enrolled")
	}
	if enrolled == 0 {
		return pass(check, "no running pod is labelled for the mesh (label a namespace "+enroll.DataplaneModeLabel+"="+enroll.ModeAmbient+")")
	}
	return pass(check, fmt.Sprintf("%s in %s, each annotated %s=%s", plural(enrolled, "pod"),
		plural(len(namespaces), "namespace"), enroll.RedirectionAnnotation, enroll.RedirectionEnabled))
}

func firstFew(ids []string) string {
	sort.Strings(ids)
	if len(ids) > 5 {
		return strings.Join(ids[:5], ", ") + fmt.Sprintf(" and %d more", len(ids)-5)
	}
	return strings.Join(ids, ", ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
