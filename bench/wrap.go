package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// wrapBench: launch wrap on a 1 GB image of 10 layers, archive to archive (against cp
// of the same archive) and registry to registry (bytes the registry received, against
// the image's size), 3 rounds each.
func wrapBench(env *benchEnv) error {
	const layers, layerSize, rounds = 10, 100 << 20, 3
	dir, err := os.MkdirTemp("", "bench-wrap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "app.tar")
	if err := writeSaveArchive(src, "localhost/bench/app:1", layers, layerSize); err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}

	// The registry: go-containerregistry's, in this process, counting request bodies.
	var received atomic.Int64
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = countingBody{r.Body, &received}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tag, err := name.ParseReference(host + "/bench/app:1")
	if err != nil {
		return err
	}
	img, err := tarball.ImageFromPath(src, nil)
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img); err != nil {
		return err
	}

	run := func(args ...string) (time.Duration, error) {
		start := time.Now()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return time.Since(start), nil
	}
	var cp, archive, toRegistry []time.Duration
	var sent []int64
	for i := 0; i < rounds; i++ {
		out := filepath.Join(dir, "out.tar")
		d, err := run("cp", src, out)
		if err != nil {
			return err
		}
		cp = append(cp, d)
		os.Remove(out)
		if d, err = run(env.launch, "wrap", "docker-archive:"+src, "docker-archive:"+out); err != nil {
			return err
		}
		archive = append(archive, d)
		os.Remove(out)
		received.Store(0)
		if d, err = run(env.launch, "wrap", host+"/bench/app:1", fmt.Sprintf("docker://%s/bench/app-traced-%d:1", host, i)); err != nil {
			return err
		}
		toRegistry = append(toRegistry, d)
		sent = append(sent, received.Load())
	}
	fmt.Printf("## launch wrap, a %d MB image of %d layers\n\n", st.Size()>>20, layers)
	fmt.Printf("%d rounds; the archive as `docker save` and `podman save` write it (layers uncompressed), the registry go-containerregistry's in the bench process.\n\n", rounds)
	fmt.Println("| | median | rounds | bytes sent to the registry |")
	fmt.Println("|---|---:|---|---:|")
	fmt.Printf("| cp of the archive (reference) | %s | %s | |\n", median(cp).Round(10*time.Millisecond), list(cp))
	fmt.Printf("| wrap, docker-archive to docker-archive | %s | %s | |\n", median(archive).Round(10*time.Millisecond), list(archive))
	fmt.Printf("| wrap, registry to registry | %s | %s | %s (first round; the launcher layer is there after it) |\n\n", median(toRegistry).Round(10*time.Millisecond), list(toRegistry), mbList(sent))
	return nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// writeSaveArchive writes an archive in docker save's format: manifest.json, the config,
// and one uncompressed layer tar per layer, each holding one file of random bytes.
func writeSaveArchive(path, ref string, layers, size int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	rng := rand.New(rand.NewSource(1))
	var diffIDs, files []string
	for i := 0; i < layers; i++ {
		layer, err := os.CreateTemp(filepath.Dir(path), "layer-")
		if err != nil {
			return err
		}
		lw := tar.NewWriter(layer)
		lw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/%d.bin", i), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg})
		if _, err := io.CopyN(lw, rng, int64(size)); err != nil {
			return err
		}
		lw.Close()
		layer.Seek(0, io.SeekStart)
		h, n, err := sha256Reader(layer)
		if err != nil {
			return err
		}
		layer.Seek(0, io.SeekStart)
		file := h + "/layer.tar"
		tw.WriteHeader(&tar.Header{Name: file, Mode: 0o644, Size: n, Typeflag: tar.TypeReg})
		if _, err := io.Copy(tw, layer); err != nil {
			return err
		}
		layer.Close()
		os.Remove(layer.Name())
		diffIDs = append(diffIDs, "sha256:"+h)
		files = append(files, file)
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
		"config": map[string]any{"Entrypoint": []string{"/app"}, "User": "1000"},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	ch, _, _ := sha256Reader(strings.NewReader(string(config)))
	manifest, _ := json.Marshal([]map[string]any{{"Config": ch + ".json", "RepoTags": []string{ref}, "Layers": files}})
	for _, e := range []struct {
		name string
		data []byte
	}{{ch + ".json", config}, {"manifest.json", manifest}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg})
		tw.Write(e.data)
	}
	return tw.Close()
}

func list(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.Round(10*time.Millisecond).String())
	}
	return strings.Join(s, ", ")
}

func mbList(ns []int64) string {
	var s []string
	for _, n := range ns {
		s = append(s, fmt.Sprintf("%.2f MB", float64(n)/1e6))
	}
	return strings.Join(s, ", ")
}

func sha256Reader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
