package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BaseImageLauncherPath is where the otel-go-launcher base image (Dockerfile.base)
// holds the launcher.
const BaseImageLauncherPath = "/usr/local/bin/launch"

// Launchers supply the launcher layer for a platform.
type Launchers interface {
	// Layer returns the layer holding the launcher for p, or an error that says
	// which platform none could supply; making it stops once ctx is done.
	Layer(ctx context.Context, p v1.Platform) (v1.Layer, error)
}

// LauncherLayer builds the layer that holds a launcher binary at LauncherPath: a
// directory and a file, root's, at time zero, compressed at a fixed level, so that
// the same launcher always makes the same layer, one blob in a registry however many
// images carry it.
func LauncherLayer(binary []byte) (v1.Layer, error) {
	return launcherLayer(context.Background(), binary)
}

// launcherLayer is LauncherLayer, stopping once ctx is done: gzipping a launcher
// takes a second or more of CPU.
func launcherLayer(ctx context.Context, binary []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	dir := strings.TrimPrefix(path.Dir(LauncherPath), "/") + "/"
	epoch := time.Unix(0, 0).UTC()
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX},
		{Typeflag: tar.TypeReg, Name: dir + path.Base(LauncherPath), Mode: 0o755, Size: int64(len(binary)), ModTime: epoch, Format: tar.FormatPAX},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	if _, err := io.Copy(tw, ctxReader{ctx, bytes.NewReader(binary)}); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// elfArch is the GOARCH of an ELF executable, or an error if it is not one.
func elfArch(binary []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %w", err)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	}
	return "", fmt.Errorf("ELF machine %v: not a Go architecture", f.Machine)
}

// BinaryLauncher supplies one launcher binary (the running `launch`) for the
// platform it was built for.
type BinaryLauncher struct {
	Binary []byte
	Source string // where it came from, for errors

	once  sync.Once
	arch  string
	layer v1.Layer
	err   error
}

func (b *BinaryLauncher) Layer(ctx context.Context, p v1.Platform) (v1.Layer, error) {
	b.once.Do(func() {
		if b.arch, b.err = elfArch(b.Binary); b.err != nil {
			b.err = fmt.Errorf("launcher %s: %w", b.Source, b.err)
			return
		}
		b.layer, b.err = launcherLayer(ctx, b.Binary)
	})
	if b.err != nil {
		return nil, b.err
	}
	if p.OS != "linux" || p.Architecture != b.arch {
		return nil, &NoLauncherError{Platform: p, Tried: []string{fmt.Sprintf("%s (linux/%s)", b.Source, b.arch)}}
	}
	return b.layer, nil
}

// NoLauncherError says that no launcher source has a launcher for a platform.
type NoLauncherError struct {
	Platform v1.Platform
	Tried    []string
}

func (e *NoLauncherError) Error() string {
	return fmt.Sprintf("no launcher for %s: %s has none; give --launcher-image a multi-platform otel-go-launcher image (make image PLATFORMS=...)", e.Platform, strings.Join(e.Tried, " and "))
}

// ImageLauncher supplies the launcher of each platform of the otel-go-launcher base
// image, read from BaseImageLauncherPath in that platform's image.
type ImageLauncher struct {
	Index  v1.ImageIndex // a multi-platform base image, or
	Image  v1.Image      // a single-platform one
	Source string

	mu     sync.Mutex
	layers map[string]v1.Layer
}

func (il *ImageLauncher) Layer(ctx context.Context, p v1.Platform) (v1.Layer, error) {
	il.mu.Lock()
	defer il.mu.Unlock()
	key := p.String()
	if l, ok := il.layers[key]; ok {
		return l, nil
	}
	img, err := il.imageFor(p)
	if err != nil {
		return nil, err
	}
	bin, err := extractFile(img, BaseImageLauncherPath)
	if err != nil {
		return nil, fmt.Errorf("launcher image %s (%s): %w", il.Source, p, err)
	}
	arch, err := elfArch(bin)
	if err != nil {
		return nil, fmt.Errorf("launcher image %s (%s): %s: %w", il.Source, p, BaseImageLauncherPath, err)
	}
	if arch != p.Architecture {
		return nil, fmt.Errorf("launcher image %s (%s): %s is a %s program", il.Source, p, BaseImageLauncherPath, arch)
	}
	l, err := launcherLayer(ctx, bin)
	if err != nil {
		return nil, err
	}
	if il.layers == nil {
		il.layers = map[string]v1.Layer{}
	}
	il.layers[key] = l
	return l, nil
}

func (il *ImageLauncher) imageFor(p v1.Platform) (v1.Image, error) {
	if il.Image != nil {
		have, err := Platform(il.Image)
		if err != nil {
			return nil, err
		}
		if !platformMatches(have, p) {
			return nil, &NoLauncherError{Platform: p, Tried: []string{fmt.Sprintf("%s (%s)", il.Source, have)}}
		}
		return il.Image, nil
	}
	im, err := il.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			continue
		}
		have = append(have, d.Platform.String())
		if platformMatches(*d.Platform, p) && d.MediaType.IsImage() {
			return il.Index.Image(d.Digest)
		}
	}
	return nil, &NoLauncherError{Platform: p, Tried: []string{fmt.Sprintf("%s (%s)", il.Source, strings.Join(have, ", "))}}
}

// platformMatches says whether an image for have runs where want is asked for: the
// same OS and architecture, and the same variant when both name one.
func platformMatches(have, want v1.Platform) bool {
	return have.OS == want.OS && have.Architecture == want.Architecture &&
		(have.Variant == "" || want.Variant == "" || have.Variant == want.Variant)
}

// maxLauncherSize bounds the launcher binary read from a launcher image (it is ~30 MB).
const maxLauncherSize = 512 << 20

// extractFile reads one regular file from an image's flattened filesystem.
func extractFile(img v1.Image, file string) ([]byte, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	want := strings.TrimPrefix(file, "/")
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: not in the image", file)
		}
		if err != nil {
			return nil, err
		}
		if strings.TrimPrefix(path.Clean(h.Name), "./") != want {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%s: not a regular file", file)
		}
		if h.Size > maxLauncherSize {
			return nil, overLimit("%s is %d bytes, over the %s a launcher binary may be: not a launcher", file, h.Size, FormatSize(maxLauncherSize))
		}
		return io.ReadAll(tr)
	}
}

// Chain tries each source in turn: the launcher image first, then the running binary.
type Chain []Launchers

func (c Chain) Layer(ctx context.Context, p v1.Platform) (v1.Layer, error) {
	var tried []string
	for _, l := range c {
		layer, err := l.Layer(ctx, p)
		var none *NoLauncherError
		if errors.As(err, &none) {
			tried = append(tried, none.Tried...)
			continue
		}
		return layer, err
	}
	return nil, &NoLauncherError{Platform: p, Tried: tried}
}
