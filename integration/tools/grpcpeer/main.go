// grpcpeer is a gRPC server built on grpc-go (an implementation we did not write), for
// the interop tests of our own gRPC client (ztunnel/control/grpc_interop_test.cc).
// It makes a CA and a serving certificate for the DNS name "grpcpeer.test" (as istiod's:
// DNS SANs only), writes the CA to DIR/ca.pem, prints "listening PORT" and serves
// these raw-bytes methods until killed:
//
//	/test.Echo/Unary     one message back
//	/test.Echo/Stream    every message back, then OK at the client's half-close
//	/test.Echo/Fail      PERMISSION_DENIED "denied: ✓ 100%"
//	/test.Echo/Slow      waits for the deadline, then returns its error
//	/test.Echo/Metadata  the request metadata and whether a deadline came, as JSON
//	/test.Echo/Big       one message of as many bytes as the request's decimal text
//	/test.Echo/Trailers  header x-header: h, the message back, trailer x-trailer: v
//
// With --ads-script DIR it also serves delta ADS
// (/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources) as a
// scripted control plane: DIR/000.bin, 001.bin, ... are sent in order, each once the
// client has sent two requests (its initial ones) plus one per response before it; every
// request received is printed as "request BASE64".
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rawCodec passes message bytes through: the peer needs no generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var adsScript = flag.String("ads-script", "", "directory of DeltaDiscoveryResponse files to serve")

var stdout sync.Mutex

func ads(stream grpc.ServerStream) error {
	files, _ := filepath.Glob(filepath.Join(*adsScript, "*.bin"))
	sort.Strings(files)
	received := make(chan struct{}, 1024)
	errc := make(chan error, 1)
	go func() {
		for {
			var m []byte
			if err := stream.RecvMsg(&m); err != nil {
				errc <- err
				return
			}
			stdout.Lock()
			fmt.Printf("request %s\n", base64.StdEncoding.EncodeToString(m))
			os.Stdout.Sync()
			stdout.Unlock()
			received <- struct{}{}
		}
	}()
	count := 0
	for i, f := range files {
		for count < 2+i {
			select {
			case <-received:
				count++
			case err := <-errc:
				return err
			}
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if err := stream.SendMsg(&data); err != nil {
			return err
		}
	}
	for {
		select {
		case <-received:
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func serve(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	if method == "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources" && *adsScript != "" {
		return ads(stream)
	}
	recv := func() ([]byte, error) {
		var m []byte
		err := stream.RecvMsg(&m)
		return m, err
	}
	switch method {
	case "/test.Echo/Unary":
		m, err := recv()
		if err != nil {
			return err
		}
		return stream.SendMsg(&m)
	case "/test.Echo/Stream":
		for {
			m, err := recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := stream.SendMsg(&m); err != nil {
				return err
			}
		}
	case "/test.Echo/Fail":
		return status.Error(codes.PermissionDenied, "denied: ✓ 100%")
	case "/test.Echo/Slow":
		<-stream.Context().Done()
		return status.FromContextError(stream.Context().Err()).Err()
	case "/test.Echo/Metadata":
		md, _ := metadata.FromIncomingContext(stream.Context())
		_, deadline := stream.Context().Deadline()
		out, _ := json.Marshal(map[string]any{"metadata": md, "deadline": deadline})
		if _, err := recv(); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return stream.SendMsg(&out)
	case "/test.Echo/Big":
		m, err := recv()
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(m)))
		if err != nil {
			return status.Error(codes.InvalidArgument, "want a size")
		}
		out := make([]byte, n)
		for i := range out {
			out[i] = byte('a' + i%26)
		}
		return stream.SendMsg(&out)
	case "/test.Echo/Trailers":
		if err := stream.SetHeader(metadata.Pairs("x-header", "h")); err != nil {
			return err
		}
		stream.SetTrailer(metadata.Pairs("x-trailer", "v"))
		m, err := recv()
		if err != nil {
			return err
		}
		return stream.SendMsg(&m)
	}
	return status.Errorf(codes.Unimplemented, "no method %s", method)
}

// serving makes a CA and a certificate for "grpcpeer.test" signed by it.
func serving(dir string) (tls.Certificate, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"grpcpeer"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"grpcpeer.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func main() {
	dir := flag.String("dir", ".", "where ca.pem goes")
	// (--ads-script is declared with ads())
	flag.Parse()
	cert, err := serving(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcpeer:", err)
		os.Exit(1)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcpeer:", err)
		os.Exit(1)
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})),
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(serve),
		// Our client pings often in the keepalive test; grpc-go would GOAWAY it otherwise.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Millisecond, PermitWithoutStream: true}),
	)
	stdout.Lock()
	fmt.Printf("listening %d\n", lis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	stdout.Unlock()
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "grpcpeer:", err)
		os.Exit(1)
	}
}
