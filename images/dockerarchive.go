package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The docker archive (docker save, podman save, docker load) is read and written here
// rather than by go-containerregistry's tarball package, for one reason: its layers are
// usually uncompressed, and an archive-to-archive wrap should copy them as they are.
// tarball computes a manifest, which needs every layer gzipped to digest it, and
// gzips each layer again to write it: 30 s for a 1 GB image where a copy takes 4.
// Here a layer stays a section of the archive file until a registry or a layout needs
// its compressed form.

// dockerArchiveManifest is one entry of an archive's manifest.json.
type dockerArchiveManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// readDockerArchive opens the image tagged tag in the archive at p, or its only one.
func readDockerArchive(ctx context.Context, p, tag string, lim Limits) (Artifact, func(), error) {
	a, err := openArchive(ctx, p, "a docker archive", lim)
	if err != nil {
		return Artifact{}, nil, err
	}
	fail := func(err error) (Artifact, func(), error) { a.Close(); return Artifact{}, nil, err }
	if !a.has("manifest.json") {
		return fail(fmt.Errorf("%s: not a docker archive: no manifest.json (write what docker save or podman save writes)", p))
	}
	raw, err := a.readAll("manifest.json", lim.ManifestSize)
	if err != nil {
		return fail(err)
	}
	var ms []dockerArchiveManifest
	if err := json.Unmarshal(raw, &ms); err != nil {
		return fail(fmt.Errorf("%s: manifest.json: %w", p, err))
	}
	if len(ms) > lim.IndexEntries {
		return fail(overLimit("%s: manifest.json lists %d images, over the limit of %d; %s", p, len(ms), lim.IndexEntries, malformedHint))
	}
	var chosen *dockerArchiveManifest
	var all []string
	for i, m := range ms {
		all = append(all, m.RepoTags...)
		if tag == "" && len(ms) == 1 {
			chosen = &ms[i]
		}
		for _, t := range m.RepoTags {
			if tag != "" && sameTag(t, tag) {
				chosen = &ms[i]
			}
		}
	}
	switch {
	case chosen == nil && tag != "":
		return fail(fmt.Errorf("%s: no image tagged %s (it has %v)", p, tag, all))
	case chosen == nil:
		return fail(fmt.Errorf("%s holds %d images (%v): name one, docker-archive:%s:NAME:TAG", p, len(ms), all, p))
	}
	if len(chosen.Layers) > lim.Layers {
		return fail(overLimit("%s: an image of %d layers, over the limit of %d; %s", p, len(chosen.Layers), lim.Layers, malformedHint))
	}
	config, err := a.readAll(chosen.Config, lim.ConfigSize)
	if err != nil {
		return fail(err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(config))
	if err != nil {
		return fail(fmt.Errorf("%s: the image config: %w", p, err))
	}
	if len(cf.RootFS.DiffIDs) != len(chosen.Layers) {
		return fail(fmt.Errorf("%s: %d layers and %d diff IDs", p, len(chosen.Layers), len(cf.RootFS.DiffIDs)))
	}
	img := &archiveImage{config: config, layers: map[v1.Hash]*archiveLayer{}}
	for i, file := range chosen.Layers {
		e, ok := a.entries[path.Clean(file)]
		if !ok {
			return fail(fmt.Errorf("%s: no %s in the archive", p, file))
		}
		var magic [2]byte
		a.f.ReadAt(magic[:], e.offset)
		img.layers[cf.RootFS.DiffIDs[i]] = &archiveLayer{file: a, name: file, size: e.size, diffID: cf.RootFS.DiffIDs[i], gzipped: e.size >= 2 && magic == [2]byte{0x1f, 0x8b}}
	}
	name := tag
	if name == "" && len(chosen.RepoTags) > 0 {
		name = chosen.RepoTags[0]
	}
	return Artifact{Image: img, Name: name}, func() { a.Close() }, nil
}

// sameTag compares two image names as name.ParseReference reads them (app:1 is
// docker.io/library/app:1).
func sameTag(a, b string) bool {
	ra, err1 := name.ParseReference(a)
	rb, err2 := name.ParseReference(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return ra.Name() == rb.Name()
}

// archiveImage is an image of a docker archive: a config and layers by diff ID. Its
// manifest is only made when asked for (a registry or a layout needs it), from the
// layers' gzipped forms.
type archiveImage struct {
	config []byte
	layers map[v1.Hash]*archiveLayer

	once        sync.Once
	manifest    *v1.Manifest
	rawManifest []byte
	err         error
}

var _ v1.Image = (*archiveImage)(nil)

func (i *archiveImage) RawConfigFile() ([]byte, error) { return i.config, nil }
func (i *archiveImage) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(i.config))
}
func (i *archiveImage) ConfigName() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(i.config))
	return h, err
}
func (i *archiveImage) MediaType() (types.MediaType, error) { return types.DockerManifestSchema2, nil }

// lazyManifest: the manifest needs every plain layer gzipped to digest it.
func (i *archiveImage) lazyManifest() {}

func (i *archiveImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("the archive has no layer %s", h)
}

func (i *archiveImage) Layers() ([]v1.Layer, error) {
	cf, err := i.ConfigFile()
	if err != nil {
		return nil, err
	}
	var ls []v1.Layer
	for _, d := range cf.RootFS.DiffIDs {
		l, err := i.LayerByDiffID(d)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// computeManifest makes the Docker manifest of the image: each layer's descriptor is
// its gzipped form's, the file itself when it is stored gzipped.
func (i *archiveImage) computeManifest() error {
	i.once.Do(func() {
		digest, size, err := v1.SHA256(bytes.NewReader(i.config))
		if err != nil {
			i.err = err
			return
		}
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2,
			Config: v1.Descriptor{MediaType: types.DockerConfigJSON, Size: size, Digest: digest}}
		layers, err := i.Layers()
		if err != nil {
			i.err = err
			return
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				i.err = err
				return
			}
			n, err := l.Size()
			if err != nil {
				i.err = err
				return
			}
			m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerLayer, Size: n, Digest: d})
		}
		i.manifest = &m
		i.rawManifest, i.err = json.Marshal(m)
	})
	return i.err
}

func (i *archiveImage) Manifest() (*v1.Manifest, error) {
	if err := i.computeManifest(); err != nil {
		return nil, err
	}
	return i.manifest.DeepCopy(), nil
}

func (i *archiveImage) RawManifest() ([]byte, error) {
	if err := i.computeManifest(); err != nil {
		return nil, err
	}
	return i.rawManifest, nil
}

func (i *archiveImage) Digest() (v1.Hash, error) {
	raw, err := i.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h, err
}

func (i *archiveImage) Size() (int64, error) {
	raw, err := i.RawManifest()
	return int64(len(raw)), err
}

func (i *archiveImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for _, l := range i.layers {
		if d, err := l.Digest(); err == nil && d == h {
			return l, nil
		}
	}
	if c, _ := i.ConfigName(); c == h {
		return partial.ConfigLayer(i)
	}
	return nil, fmt.Errorf("the archive has no blob %s", h)
}

// archiveLayer is a layer file in a docker archive, gzipped or not, read in place.
type archiveLayer struct {
	file    *archiveFile
	name    string
	size    int64 // as stored
	diffID  v1.Hash
	gzipped bool

	once  sync.Once
	other v1.Layer // the form the file is not in, made by go-containerregistry when asked
	err   error
}

var _ v1.Layer = (*archiveLayer)(nil)

func (l *archiveLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *archiveLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }

// raw reads the file as stored.
func (l *archiveLayer) raw() (io.ReadCloser, error) {
	r, _, err := l.file.open(l.name)
	return r, err
}

func (l *archiveLayer) Uncompressed() (io.ReadCloser, error) {
	if !l.gzipped {
		return l.raw()
	}
	rc, err := l.raw()
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReader(rc))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", l.file.path, l.name, err)
	}
	return zr, nil
}

func (l *archiveLayer) compressedForm() (v1.Layer, error) {
	l.once.Do(func() {
		if l.gzipped {
			l.other, l.err = partial.CompressedToLayer(gzippedLayer{l})
		} else {
			l.other, l.err = partial.UncompressedToLayer(plainLayer{l})
		}
	})
	return l.other, l.err
}

func (l *archiveLayer) Compressed() (io.ReadCloser, error) {
	if l.gzipped {
		return l.raw()
	}
	c, err := l.compressedForm()
	if err != nil {
		return nil, err
	}
	return c.Compressed()
}

func (l *archiveLayer) Digest() (v1.Hash, error) {
	c, err := l.compressedForm()
	if err != nil {
		return v1.Hash{}, err
	}
	return c.Digest()
}

func (l *archiveLayer) Size() (int64, error) {
	if l.gzipped {
		return l.size, nil
	}
	c, err := l.compressedForm()
	if err != nil {
		return 0, err
	}
	return c.Size()
}

// plainLayer and gzippedLayer give go-containerregistry the layer's stored form, from
// which it derives the other (digest and size of the gzipped form, or the diff ID).
type plainLayer struct{ l *archiveLayer }

func (p plainLayer) DiffID() (v1.Hash, error)             { return p.l.diffID, nil }
func (p plainLayer) Uncompressed() (io.ReadCloser, error) { return p.l.raw() }
func (p plainLayer) MediaType() (types.MediaType, error)  { return types.DockerLayer, nil }

type gzippedLayer struct{ l *archiveLayer }

func (g gzippedLayer) Compressed() (io.ReadCloser, error)  { return g.l.raw() }
func (g gzippedLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
func (g gzippedLayer) Size() (int64, error)                { return g.l.Size() }
func (g gzippedLayer) Digest() (v1.Hash, error) {
	rc, err := g.l.raw()
	if err != nil {
		return v1.Hash{}, err
	}
	defer rc.Close()
	h, _, err := v1.SHA256(rc)
	return h, err
}

// writeDockerArchive writes img as a docker archive tagged tag: the config, each layer
// file, manifest.json. A layer read from a docker archive is copied as it is stored, its
// diff ID checked on the way for an uncompressed one; other layers (the launcher's, a
// registry's) are written gzipped.
func writeDockerArchive(w io.Writer, tag name.Reference, img v1.Image) error {
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(config))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	configHash, _, _ := v1.SHA256(bytes.NewReader(config))
	m := dockerArchiveManifest{Config: configHash.Hex + ".json", Layers: []string{}}
	if _, ok := tag.(name.Tag); ok {
		m.RepoTags = []string{tag.String()}
	}
	if err := writeEntry(tw, m.Config, int64(len(config)), bytes.NewReader(config)); err != nil {
		return err
	}
	written := map[string]bool{}
	for _, diffID := range cf.RootFS.DiffIDs {
		l, err := img.LayerByDiffID(diffID)
		if err != nil {
			return err
		}
		file, err := writeArchiveLayer(tw, l, diffID, written)
		if err != nil {
			return err
		}
		m.Layers = append(m.Layers, file)
	}
	manifest, err := json.Marshal([]dockerArchiveManifest{m})
	if err != nil {
		return err
	}
	if err := writeEntry(tw, "manifest.json", int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return err
	}
	return tw.Close()
}

func writeArchiveLayer(tw *tar.Writer, l v1.Layer, diffID v1.Hash, written map[string]bool) (string, error) {
	if al, ok := unwrapLayer(l).(*archiveLayer); ok {
		file := diffID.Hex + ".tar"
		if al.gzipped {
			file += ".gz"
		}
		if written[file] {
			return file, nil
		}
		written[file] = true
		rc, err := al.raw()
		if err != nil {
			return "", err
		}
		// Copied as stored, checked on the way: a plain layer's digest is its diff
		// ID, a gzipped one's uncompresses to it.
		what := fmt.Sprintf("%s: layer %s", al.file.path, al.name)
		cr := newCheckedReader(al.file.ctx, rc, layerCheck{what: what, size: al.size, diffID: diffID, maxSize: al.file.lim.LayerSize})
		defer cr.Close()
		if err := writeEntry(tw, file, al.size, cr); err != nil {
			return "", err
		}
		return file, nil
	}
	digest, err := l.Digest()
	if err != nil {
		return "", err
	}
	file := digest.Hex + ".tar.gz"
	if written[file] {
		return file, nil
	}
	written[file] = true
	size, err := l.Size()
	if err != nil {
		return "", err
	}
	rc, err := l.Compressed()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return file, writeEntry(tw, file, size, rc)
}

func writeEntry(tw *tar.Writer, file string, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: file, Size: size, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s: %d bytes, want %d", file, n, size)
	}
	return err
}

// storedSize is what writeDockerArchive writes of img: its config and each layer as it
// will be stored, for progress reports.
func storedSize(img v1.Image) (int64, error) {
	config, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	total := int64(len(config))
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	for _, l := range layers {
		if al, ok := l.(*archiveLayer); ok {
			total += al.size
			continue
		}
		n, err := l.Size()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// progressWriter reports the bytes written through it.
type progressWriter struct {
	w        io.Writer
	n, total int64
	report   func(complete, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	p.report(min(p.n, p.total), p.total)
	return n, err
}
