package agent

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"ztunnel.dev/kube/internal/enroll"
	"ztunnel.dev/kube/internal/kclient"
)

// SweepAnnotations removes the redirection annotation from every pod of the cluster
// that still carries it: after an uninstall (the chart's post-delete Job), when the
// agents may have lost their rights before they could. Returns how many it changed.
func SweepAnnotations(ctx context.Context, kubeconfig string) (int, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return 0, fmt.Errorf("kubeconfig: %w", err)
	}
	client, err := kclient.New(rc)
	if err != nil {
		return 0, err
	}
	patch := redirectionPatch(false)
	changed := 0
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := client.ListPods(ctx, "", opts)
		if err != nil {
			return changed, fmt.Errorf("listing pods: %w", err)
		}
		for _, p := range list.Items {
			if _, ok := p.Annotations[enroll.RedirectionAnnotation]; !ok {
				continue
			}
			err := client.MergePatchPod(ctx, p.Namespace, p.Name, patch)
			if err != nil && !apierrors.IsNotFound(err) {
				return changed, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
			}
			changed++
		}
		if list.Continue == "" {
			return changed, nil
		}
		opts.Continue = list.Continue
	}
}
