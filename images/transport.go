package images

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sys/unix"
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

	// Limits bound what reading an image may cost; zero fields take DefaultLimits.
	Limits Limits

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

// Read opens the image or index ref names. Layers are read lazily, when written; what
// ref leads to is held to o.Limits, and each layer is checked as it is read (its
// digest, size and diff ID); reads stop once ctx is done.
func (o *IO) Read(ctx context.Context, ref Ref) (Artifact, error) {
	a, err := o.read(ctx, ref)
	if err == nil {
		a, err = newGuard(ctx, o.Limits).artifact(a)
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("reading %s: %w", ref, explain(err))
	}
	if a.Name == "" {
		a.Name = ref.Name
	}
	return a, nil
}

func (o *IO) read(ctx context.Context, ref Ref) (Artifact, error) {
	lim := o.Limits.orDefaults()
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
		a, closeArchive, err := readDockerArchive(ctx, ref.Path, ref.Name, lim)
		if err != nil {
			return Artifact{}, err
		}
		o.cleanup = append(o.cleanup, closeArchive)
		return a, nil
	case OCILayout:
		d, err := openDir(ref.Path)
		if err != nil {
			return Artifact{}, fmt.Errorf("not an OCI layout: %w", err)
		}
		o.cleanup = append(o.cleanup, func() { d.Close() })
		return readLayout(dirFiles{ctx: ctx, d: d}, ref.Name, "oci:"+ref.Path, lim)
	case OCIArchive:
		// Read in place, never extracted: see tarindex.go.
		a, err := openArchive(ctx, ref.Path, "an OCI archive", lim)
		if err != nil {
			return Artifact{}, err
		}
		o.cleanup = append(o.cleanup, func() { a.Close() })
		return readLayout(a, ref.Name, "oci-archive:"+ref.Path, lim)
	case DockerDaemon:
		return o.readDaemon(ctx, ref.Name)
	case Containerd:
		return o.readContainerd(ctx, ref.Name)
	}
	return Artifact{}, fmt.Errorf("transport %s: not supported yet", ref.Transport)
}

// Write stores a at ref. Files and directories are written under a temporary name
// and renamed, so that a failure (or ctx done) leaves nothing half-written at ref; a
// registry takes the manifest last, after every blob.
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
		return atomicFile(ref.Path, func(f io.Writer) error {
			bw := bufio.NewWriterSize(ctxWriter{ctx, f}, 1<<20)
			var w io.Writer = bw
			if o.Progress != nil {
				total, err := storedSize(img)
				if err != nil {
					return err
				}
				w = &progressWriter{w: bw, total: total, report: o.Progress}
			}
			if err := writeDockerArchive(w, r, img); err != nil {
				return err
			}
			return bw.Flush()
		})
	case OCILayout:
		return writeLayoutDir(ctx, ref.Path, a, ref.Name, o.Limits.orDefaults())
	case OCIArchive:
		// Straight into the archive: no layout on disk first.
		return atomicFile(ref.Path, func(f io.Writer) error {
			bw := bufio.NewWriterSize(ctxWriter{ctx, f}, 1<<20)
			tw := tar.NewWriter(bw)
			if err := writeLayout(ctx, &tarSink{tw: tw}, a, ref.Name, nil); err != nil {
				return err
			}
			if err := tw.Close(); err != nil {
				return err
			}
			return bw.Flush()
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

// writeLayoutDir writes a into the OCI layout at path: into it, if it is one already
// (blobs first, index.json last, each by rename; what this write made is taken away
// if it fails), or as a new directory made under a temporary name and renamed.
func writeLayoutDir(ctx context.Context, path string, a Artifact, tag string, lim Limits) error {
	existing, err := openDir(path)
	if errors.Is(err, unix.ENOENT) {
		return atomicDir(path, func(d *dirHandle) error {
			s := &dirSink{root: d}
			defer s.close()
			return writeLayout(ctx, s, a, tag, nil)
		})
	}
	if err != nil {
		return err
	}
	defer existing.Close()
	if _, ok, err := existing.lstat("index.json"); err != nil {
		return err
	} else if !ok {
		names, _ := existing.f.Readdirnames(1)
		if len(names) > 0 {
			return fmt.Errorf("%s exists and is not an OCI layout (no index.json): choose another destination", path)
		}
		// An empty directory: replaced by the new layout, whole.
		return atomicDir(path, func(d *dirHandle) error {
			s := &dirSink{root: d}
			defer s.close()
			return writeLayout(ctx, s, a, tag, nil)
		})
	}
	index, err := readExistingIndex(existing, lim)
	if err != nil {
		return err
	}
	s := &dirSink{root: existing}
	defer s.close()
	if err := writeLayout(ctx, s, a, tag, index); err != nil {
		s.undo()
		return err
	}
	return nil
}

// atomicFile writes path through write(f), f a new file of a random name in path's
// directory (made with O_EXCL|O_NOFOLLOW: no one else's file), then renames it to
// path. A failure leaves nothing at path and no temporary file.
func atomicFile(path string, write func(f io.Writer) error) error {
	dir, err := openDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	base := filepath.Base(path)
	f, tmp, err := dir.createTemp(base)
	if err != nil {
		return err
	}
	defer f.Close()
	if err = write(f); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = dir.rename(tmp, base)
	}
	if err != nil {
		dir.remove(tmp)
		return err
	}
	// Someone who can write to the directory could have put something else in the
	// temporary file's place before the rename.
	if !dir.sameFile(base, f) {
		dir.remove(base)
		return fmt.Errorf("%s was replaced by someone else while it was written: others can write to %s; write somewhere only you can", path, dir.path)
	}
	return nil
}

// atomicDir makes the directory path through write(d), d a new directory of a random
// name beside it, then renames d to path (which may be an empty directory).
func atomicDir(path string, write func(d *dirHandle) error) error {
	parent, err := openDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer parent.Close()
	base := filepath.Base(path)
	tmp, err := parent.mkdirTemp(base)
	if err != nil {
		return err
	}
	d, _, err := parent.subdir(tmp, false)
	if err == nil {
		err = write(d)
		if err == nil {
			err = d.f.Chmod(0o755)
		}
		d.Close()
	}
	if err == nil {
		err = parent.rename(tmp, base)
	}
	if err != nil {
		parent.removeAll(tmp)
		return err
	}
	return nil
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
