package images

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// IO says how references are reached.
type IO struct {
	// Insecure allows plain HTTP and unverified TLS for every registry; localhost and
	// 127.0.0.1 are reached over plain HTTP without it, as crane does.
	Insecure bool
	// Keychain finds registry credentials; nil means the engines' own files
	// (~/.docker/config.json, $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json)
	// and their credential helpers.
	Keychain authn.Keychain
	// Transport is the HTTP transport for registries; nil means remote's default.
	Transport http.RoundTripper
	// ContainerdAddress and ContainerdNamespace reach containerd's image store
	// (defaults: DefaultContainerdAddress, DefaultContainerdNamespace).
	ContainerdAddress, ContainerdNamespace string

	// Progress, when not nil, is called as a write advances: bytes written of the
	// total, from one goroutine at a time.
	Progress func(complete, total int64)

	cleanup []func()
	store   *containerdStore
}

// Close removes what reading archives left in temporary directories.
func (o *IO) Close() {
	for _, f := range o.cleanup {
		f()
	}
	o.cleanup = nil
}

func (o *IO) nameOptions() []name.Option {
	if o.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

func (o *IO) remoteOptions(ctx context.Context) []remote.Option {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	return opts
}

// Read opens the image or index ref names. Layers are read lazily, when written.
func (o *IO) Read(ctx context.Context, ref Ref) (Artifact, error) {
	a, err := o.read(ctx, ref)
	if err != nil {
		return Artifact{}, fmt.Errorf("reading %s: %w", ref, explain(err))
	}
	if a.Name == "" {
		a.Name = ref.Name
	}
	return a, nil
}

func (o *IO) read(ctx context.Context, ref Ref) (Artifact, error) {
	switch ref.Transport {
	case Registry:
		r, err := name.ParseReference(ref.Name, o.nameOptions()...)
		if err != nil {
			return Artifact{}, err
		}
		desc, err := remote.Get(r, o.remoteOptions(ctx)...)
		if err != nil {
			return Artifact{}, err
		}
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			return Artifact{Index: idx}, err
		}
		img, err := desc.Image()
		return Artifact{Image: img}, err
	case DockerArchive:
		a, closeArchive, err := readDockerArchive(ref.Path, ref.Name)
		if err != nil {
			return Artifact{}, err
		}
		o.cleanup = append(o.cleanup, closeArchive)
		return a, nil
	case OCILayout:
		return readLayout(ref.Path, ref.Name)
	case OCIArchive:
		dir, err := os.MkdirTemp("", "launch-wrap-")
		if err != nil {
			return Artifact{}, err
		}
		o.cleanup = append(o.cleanup, func() { os.RemoveAll(dir) })
		if err := untar(ref.Path, dir); err != nil {
			return Artifact{}, err
		}
		return readLayout(dir, ref.Name)
	case DockerDaemon:
		return o.readDaemon(ctx, ref.Name)
	case Containerd:
		return o.readContainerd(ctx, ref.Name)
	}
	return Artifact{}, fmt.Errorf("transport %s: not supported yet", ref.Transport)
}

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// readLayout opens the manifest of an OCI layout named tag, or its only one.
func readLayout(dir, tag string) (Artifact, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return Artifact{}, err
	}
	root, err := p.ImageIndex()
	if err != nil {
		return Artifact{}, err
	}
	im, err := root.IndexManifest()
	if err != nil {
		return Artifact{}, err
	}
	var names []string
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		n := d.Annotations[refNameAnnotation]
		names = append(names, fmt.Sprintf("%q", n))
		if tag == "" || n == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && tag != "":
		return Artifact{}, fmt.Errorf("no image named %q in the layout (it has %s)", tag, strings.Join(names, ", "))
	case len(found) == 0:
		return Artifact{}, fmt.Errorf("the layout holds no image")
	case len(found) > 1:
		return Artifact{}, fmt.Errorf("the layout holds %d images (%s): name one, oci:%s:NAME", len(found), strings.Join(names, ", "), dir)
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		idx, err := root.ImageIndex(d.Digest)
		return Artifact{Index: idx}, err
	}
	img, err := root.Image(d.Digest)
	return Artifact{Image: img}, err
}

// Write stores a at ref. Files and directories are written under a temporary name
// and renamed, so that a failure leaves nothing half-written at ref; a registry
// takes the manifest last, after every blob.
func (o *IO) Write(ctx context.Context, ref Ref, a Artifact, defaultName string) error {
	if err := o.write(ctx, ref, a, defaultName); err != nil {
		return fmt.Errorf("writing %s: %w", ref, explain(err))
	}
	return nil
}

func (o *IO) write(ctx context.Context, ref Ref, a Artifact, defaultName string) error {
	switch ref.Transport {
	case OCILayout, OCIArchive, Containerd:
		// Their writers report nothing: count the layers as they are read.
		if o.Progress != nil {
			total, err := layerTotal(a)
			if err != nil {
				return err
			}
			a = (&counter{total: total, report: o.Progress}).counted(a)
		}
	}
	switch ref.Transport {
	case Registry:
		r, err := name.ParseReference(ref.Name, o.nameOptions()...)
		if err != nil {
			return err
		}
		opts := o.remoteOptions(ctx)
		if o.Progress != nil {
			// remote closes the channel when the push returns.
			updates, drained := make(chan v1.Update, 64), make(chan struct{})
			go func() {
				defer close(drained)
				for u := range updates {
					o.Progress(u.Complete, u.Total)
				}
			}()
			defer func() { <-drained }()
			opts = append(opts, remote.WithProgress(updates))
		}
		if a.Index != nil {
			return remote.WriteIndex(r, a.Index, opts...)
		}
		return remote.Write(r, a.Image, opts...)
	case DockerArchive:
		img, err := a.single("a docker archive")
		if err != nil {
			return err
		}
		n := ref.Name
		if n == "" {
			n = defaultName
		}
		if n == "" {
			return fmt.Errorf("no name to give the image: write docker-archive:%s:NAME:TAG", ref.Path)
		}
		r, err := name.ParseReference(n)
		if err != nil {
			return err
		}
		return atomicFile(ref.Path, func(tmp string) error {
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			bw := bufio.NewWriterSize(f, 1<<20)
			var w io.Writer = bw
			if o.Progress != nil {
				total, err := storedSize(img)
				if err != nil {
					return err
				}
				w = &progressWriter{w: bw, total: total, report: o.Progress}
			}
			if err = writeDockerArchive(w, r, img); err == nil {
				err = bw.Flush()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		})
	case OCILayout:
		if _, err := os.Stat(filepath.Join(ref.Path, "index.json")); err == nil {
			return appendLayout(ref.Path, a, ref.Name)
		}
		return atomicDir(ref.Path, func(tmp string) error { return appendLayout(tmp, a, ref.Name) })
	case OCIArchive:
		return atomicFile(ref.Path, func(tmp string) error {
			dir, err := os.MkdirTemp("", "launch-wrap-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if err := appendLayout(dir, a, ref.Name); err != nil {
				return err
			}
			return tarDir(dir, tmp)
		})
	case DockerDaemon:
		img, err := a.single("an engine's store")
		if err != nil {
			return err
		}
		return o.writeDaemon(ctx, ref.Name, img)
	case Containerd:
		return o.writeContainerd(ctx, ref.Name, a)
	}
	return fmt.Errorf("transport %s: not supported yet", ref.Transport)
}

// appendLayout adds a to the OCI layout at dir (made if absent), in place of an image
// with the same name.
func appendLayout(dir string, a Artifact, tag string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{refNameAnnotation: tag}))
	}
	matcher := func(d v1.Descriptor) bool { return d.Annotations[refNameAnnotation] == tag }
	if a.Index != nil {
		return p.ReplaceIndex(a.Index, matcher, opts...)
	}
	return p.ReplaceImage(a.Image, matcher, opts...)
}

// atomicFile writes path through write(tmp), then renames tmp to path.
func atomicFile(path string, write func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".launch-wrap.tmp")
	os.Remove(tmp)
	if err := write(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// atomicDir makes the directory path through write(tmp), then renames tmp to path.
func atomicDir(path string, write func(tmp string) error) error {
	if _, err := os.Stat(path); err == nil {
		if entries, _ := os.ReadDir(path); len(entries) > 0 {
			return fmt.Errorf("%s exists and is not an OCI layout (no index.json)", path)
		}
		os.Remove(path)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".launch-wrap.tmp")
	os.RemoveAll(tmp)
	if err := write(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// untar extracts an archive of regular files and directories (an OCI layout) into dir.
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %v", archive, err)
		}
		rel := filepath.Clean(h.Name)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("%s: entry %q leaves the archive", archive, h.Name)
		}
		target := filepath.Join(dir, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// tarDir writes the files under dir into a tar archive at path, names sorted (WalkDir
// walks in lexical order), times zero: the same layout makes the same archive.
func tarDir(dir, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Format: tar.FormatPAX}
		if d.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		h.Typeflag, h.Size = tar.TypeReg, info.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = io.Copy(tw, in)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// explain adds what to do to the errors users meet most.
func explain(err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w (log in with podman login or docker login, or set REGISTRY_AUTH_FILE)", err)
		case http.StatusNotFound:
			return fmt.Errorf("%w (no such image)", err)
		}
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("%w (a plain-HTTP registry: add --insecure)", err)
	}
	return err
}

// single is the one image of a, for a destination that holds one image per name: a's
// image, or the only image of its index (--platform chose it).
func (a Artifact) single(dst string) (v1.Image, error) {
	if a.Index == nil {
		return a.Image, nil
	}
	im, err := a.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	var platforms []string
	for _, d := range im.Manifests {
		if d.Platform != nil {
			platforms = append(platforms, d.Platform.String())
		}
	}
	if len(im.Manifests) != 1 || !im.Manifests[0].MediaType.IsImage() {
		return nil, fmt.Errorf("%s holds one image per name, and this is a multi-platform image (%s): choose one with --platform", dst, strings.Join(platforms, ", "))
	}
	return a.Index.Image(im.Manifests[0].Digest)
}
