package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/images"
	"github.com/otel-go-launcher/otel-go-launcher/internal/version"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

func wrapCommand() *cli.Command {
	return &cli.Command{
		Name:      "wrap",
		Usage:     "make a traced copy of an existing container image: the launcher in front of its entrypoint",
		ArgsUsage: "SRC DST",
		Description: `wrap reads the image SRC, adds one layer holding the launcher at ` + images.LauncherPath + `,
puts the launcher in front of the image's Entrypoint, and writes the result to DST.
The image's own layers are kept byte for byte (a registry does not receive them
again); Cmd, Env, WorkingDir, ports, labels and healthcheck are unchanged, so
"podman run IMAGE ARGS" replaces Cmd as before. An image whose USER is not root runs
the launcher as root and the app as that user, without capabilities. Wrapping a
wrapped image replaces its launcher. The same input gives the same digest.

SRC and DST are references in the syntax of podman and skopeo:
  docker://HOST/REPO:TAG or HOST/REPO:TAG  a registry (credentials from
                          ~/.docker/config.json, $REGISTRY_AUTH_FILE,
                          $XDG_RUNTIME_DIR/containers/auth.json and credential helpers;
                          plain HTTP for localhost and 127.0.0.1, --insecure for others)
  docker-archive:PATH[:NAME:TAG]  what docker save and podman save write
  oci:DIR[:TAG]           an OCI image layout
  oci-archive:PATH[:TAG]  a tar of an OCI image layout
  docker-daemon:NAME:TAG  the Docker Engine API at $DOCKER_HOST (podman's service too)
  containerd:NAME         containerd's image store (--containerd-address,
                          --containerd-namespace); the image is written through
                          containerd's content store under its own name

Each platform of a multi-platform image gets the launcher of its architecture, from
--launcher-image (the otel-go-launcher base image: make image PLATFORMS=...), or else
this launch binary, which serves its own platform.

Run the wrapped image with the launcher's capabilities, e.g.
  podman run --cap-add SYS_ADMIN,BPF,PERFMON,NET_ADMIN IMAGE

SRC is untrusted input, held to limits far above what real images use:
  indexes nested ` + fmt.Sprint(limits.IndexDepth) + ` deep, ` + fmt.Sprint(limits.IndexEntries) + ` manifests listed in one index, ` + fmt.Sprint(limits.Manifests) + ` distinct
  manifests and indexes in all, ` + images.FormatSize(limits.ManifestSize) + ` a manifest or index, ` + images.FormatSize(limits.ConfigSize) + ` an image config,
  ` + fmt.Sprint(limits.Layers) + ` layers an image, ` + fmt.Sprint(limits.ArchiveEntries) + ` entries an archive, and --max-layer-size a layer
  (stored and uncompressed) or an archive entry. Sparse archive entries are refused.
  Every layer read is checked against its digest, its size and its diff ID.
  Archives are read in place, never extracted.
File and directory destinations are written to a new file or directory of a random
name beside DST (made with O_EXCL, never through a symlink) and renamed to DST when
whole; into an existing OCI layout, blobs first and index.json last, refusing
symlinks among its files (blobs/, blobs/sha256, index.json, oci-layout).
SIGINT or SIGTERM stops a wrap within a second: nothing is left at DST (an existing
layout is as it was), no temporary file remains, and the exit code is 130 or 143.
Exit codes: 0 written, 1 failed (one line on stderr), 2 usage.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "launcher-image", Usage: "take each platform's launcher from this otel-go-launcher `IMAGE` (any SRC syntax) instead of this binary"},
			&cli.StringFlag{Name: "platform", Usage: "comma-separated `LIST` of os/arch[/variant] to wrap and keep of a multi-platform image (default: all)"},
			// Not a StringSliceFlag: it splits values at commas, and a value such as
			// OTEL_RESOURCE_ATTRIBUTES=a=b,c=d must be taken whole.
			&cli.GenericFlag{Name: "env", Value: &envList{}, Usage: "set `KEY=VALUE` in the image's config, e.g. OTEL_SERVICE_NAME=payments (repeatable; the value is taken whole, commas included); OTEL_* settings are read as the launcher will read them: one it could not trace with is refused, one it replaces by a default is said"},
			&cli.StringFlag{Name: "max-layer-size", Value: images.FormatSize(images.DefaultLayerSize), Usage: "refuse a layer (stored or uncompressed) or an archive entry larger than `SIZE` (KiB, MiB, GiB, TiB)"},
			&cli.BoolFlag{Name: "insecure", Usage: "reach registries over plain HTTP or unverified TLS"},
			&cli.StringFlag{Name: "containerd-address", Value: images.DefaultContainerdAddress, Usage: "containerd's `SOCKET`, for containerd: references"},
			&cli.StringFlag{Name: "containerd-namespace", Value: images.DefaultContainerdNamespace, Usage: "containerd's `NAMESPACE` for containerd: references (Kubernetes nodes: k8s.io)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the config change and the layer to add; write nothing"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				fmt.Fprintln(os.Stderr, "launch wrap: want SRC and DST: launch wrap [flags] SRC DST")
				return exitError{2}
			}
			return wrapAction(c, c.Args().Get(0), c.Args().Get(1))
		},
	}
}

// limits are the wrap's limits, as --help states them.
var limits = images.DefaultLimits()

// envList collects --env values whole, one per flag.
type envList []string

func (e *envList) Set(v string) error { *e = append(*e, v); return nil }
func (e *envList) String() string     { return strings.Join(*e, " ") }

// signalError is the cause of a wrap's end by a signal.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "interrupted by " + unix.SignalName(e.sig) }

// wrapAction runs a wrap with SIGINT and SIGTERM cancelling it: an interrupted wrap
// exits 128+N, as a program killed by signal N would, having left nothing at DST.
func wrapAction(c *cli.Context, srcArg, dstArg string) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			cancel(signalError{s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	err := wrap(ctx, c, srcArg, dstArg)
	var sig signalError
	switch {
	case err != nil && errors.As(context.Cause(ctx), &sig):
		fmt.Fprintf(os.Stderr, "launch wrap: %v: nothing written to %s\n", sig, dstArg)
		return exitError{128 + int(sig.sig)}
	case errors.As(err, new(usageError)):
		fmt.Fprintf(os.Stderr, "launch wrap: %v\n", err)
		return exitError{2}
	case err != nil:
		fmt.Fprintf(os.Stderr, "launch wrap: %v\n", err)
		return exitError{1}
	}
	return nil
}

// usageError is a wrap's bad command line: exit 2.
type usageError struct{ error }

func wrap(ctx context.Context, c *cli.Context, srcArg, dstArg string) error {
	src, err := images.ParseRef(srcArg)
	if err != nil {
		return err
	}
	dst, err := images.ParseRef(dstArg)
	if err != nil {
		return err
	}
	platforms, err := parsePlatforms(c.String("platform"))
	if err != nil {
		return err
	}
	var env []string
	if e, ok := c.Generic("env").(*envList); ok {
		env = *e
	}
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return usageError{fmt.Errorf("--env %q: want KEY=VALUE", kv)}
		}
	}
	if err := checkOTelEnv(os.Stderr, env); err != nil {
		return usageError{err}
	}
	lim := limits
	if lim.LayerSize, err = images.ParseSize(c.String("max-layer-size")); err != nil {
		return usageError{fmt.Errorf("--max-layer-size: %w", err)}
	}
	rw := &images.IO{Insecure: c.Bool("insecure"), ContainerdAddress: c.String("containerd-address"), ContainerdNamespace: c.String("containerd-namespace"), Limits: lim}
	defer rw.Close()

	launchers, err := launcherSources(ctx, rw, c.String("launcher-image"))
	if err != nil {
		return err
	}
	in, err := rw.Read(ctx, src)
	if err != nil {
		return err
	}
	out, err := images.Wrap(ctx, in, launchers, platforms, images.Options{Env: env, Version: version.String(), BaseName: in.Name})
	if err != nil {
		return fmt.Errorf("wrapping %s: %w", src, err)
	}
	if c.Bool("dry-run") {
		return describe(os.Stdout, in, out)
	}
	progress := newProgress(os.Stderr, "launch wrap: "+dst.String())
	rw.Progress = progress.update
	err = rw.Write(ctx, dst, out, in.Name)
	progress.done()
	if err != nil {
		return err
	}
	d, err := out.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "launch wrap: wrote %s (%s)\n", dst, d)
	return nil
}

// launcherSources: the launcher image's, then this binary's own platform.
func launcherSources(ctx context.Context, rw *images.IO, launcherImage string) (images.Launchers, error) {
	var chain images.Chain
	if launcherImage != "" {
		ref, err := images.ParseRef(launcherImage)
		if err != nil {
			return nil, fmt.Errorf("--launcher-image: %w", err)
		}
		a, err := rw.Read(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("--launcher-image: %w", err)
		}
		chain = append(chain, &images.ImageLauncher{Index: a.Index, Image: a.Image, Source: ref.String()})
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this launcher's binary: %w", err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		return nil, fmt.Errorf("reading this launcher's binary: %w", err)
	}
	return append(chain, &images.BinaryLauncher{Binary: bin, Source: self}), nil
}

func parsePlatforms(list string) ([]v1.Platform, error) {
	var ps []v1.Platform
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := v1.ParsePlatform(s)
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("--platform %q: want os/arch[/variant], e.g. linux/arm64", s)
		}
		ps = append(ps, *p)
	}
	return ps, nil
}

// describe prints what a wrap changes in each image's config, and the layer it adds.
func describe(w io.Writer, in, out images.Artifact) error {
	pairs, err := imagePairs(in, out)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		before, err := p[0].ConfigFile()
		if err != nil {
			return err
		}
		after, err := p[1].ConfigFile()
		if err != nil {
			return err
		}
		layers, err := p[1].Layers()
		if err != nil {
			return err
		}
		l := layers[len(layers)-1]
		digest, _ := l.Digest()
		size, _ := l.Size()
		fmt.Fprintf(w, "%s/%s:\n", after.OS, after.Architecture)
		fmt.Fprintf(w, "  Entrypoint: %s -> %s\n", jsonString(before.Config.Entrypoint), jsonString(after.Config.Entrypoint))
		if before.Config.User != after.Config.User {
			fmt.Fprintf(w, "  User: %q -> %q (the launcher starts the app as %q)\n", before.Config.User, after.Config.User, before.Config.User)
		}
		for _, kv := range after.Config.Env {
			if !slices.Contains(before.Config.Env, kv) {
				fmt.Fprintf(w, "  Env: + %s\n", kv)
			}
		}
		fmt.Fprintf(w, "  layer: + %s, %d bytes: %s\n", digest, size, images.LauncherPath)
	}
	return nil
}

// imagePairs matches each wrapped image with its source, by platform.
func imagePairs(in, out images.Artifact) ([][2]v1.Image, error) {
	if out.Index == nil {
		base, err := images.Unwrap(in.Image)
		return [][2]v1.Image{{base, out.Image}}, err
	}
	im, err := out.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	var pairs [][2]v1.Image
	seen := map[v1.Hash]bool{}
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() || seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		img, err := out.Index.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		base, err := images.Unwrap(img)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, [2]v1.Image{base, img})
	}
	return pairs, nil
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// progress reports a write on stderr once it has taken a second: a bar
// redrawn in place on a terminal, a line every five seconds otherwise.
type progress struct {
	w        io.Writer
	what     string
	terminal bool
	start    time.Time
	printed  time.Time
	complete int64
}

func newProgress(w *os.File, what string) *progress {
	p := &progress{w: w, what: what, start: time.Now()}
	if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		p.terminal = true
	}
	return p
}

func (p *progress) update(complete, total int64) {
	p.complete = complete
	now := time.Now()
	switch {
	case now.Sub(p.start) < time.Second || total <= 0:
	case p.terminal && now.Sub(p.printed) >= 100*time.Millisecond:
		const width = 30
		n := int(min(width, width*complete/total))
		fmt.Fprintf(p.w, "\r%s [%s%s] %s / %s", p.what, strings.Repeat("=", n), strings.Repeat(" ", width-n), mb(complete), mb(total))
		p.printed = now
	case !p.terminal && now.Sub(p.printed) >= 5*time.Second:
		fmt.Fprintf(p.w, "%s: %s of %s written\n", p.what, mb(complete), mb(total))
		p.printed = now
	}
}

// done ends a bar's line.
func (p *progress) done() {
	if p.terminal && !p.printed.IsZero() {
		fmt.Fprintf(p.w, "\r%s: %s written%s\n", p.what, mb(p.complete), strings.Repeat(" ", 40))
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// checkOTelEnv reads the OTEL_* settings of --env as the launcher will in the
// container: one no export could work with refuses the wrap, as the launcher would
// refuse to trace; one it replaces by a default is said now, at build time, where the
// operator sees it, rather than only in the container's log.
func checkOTelEnv(w io.Writer, env []string) error {
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "OTEL_") }) {
		return nil
	}
	cfg, err := otelconfig.FromList(env)
	if err != nil {
		return fmt.Errorf("--env: the launcher would not trace with these settings: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	for _, warning := range cfg.Warnings {
		fmt.Fprintf(w, "launch wrap: warning: --env: %s\n", warning)
	}
	return nil
}
