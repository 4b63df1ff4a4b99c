package images

import (
	"context"
	"fmt"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// guard holds what one reference leads to, from any transport, to the limits, and
// checks each layer read through it (its digest, size and diff ID). Indexes are
// counted as they are opened: how deep, how many entries, how many distinct ones.
type guard struct {
	ctx context.Context
	lim Limits

	mu   sync.Mutex
	seen map[v1.Hash]bool
}

func newGuard(ctx context.Context, lim Limits) *guard {
	return &guard{ctx: ctx, lim: lim.orDefaults(), seen: map[v1.Hash]bool{}}
}

func (g *guard) artifact(a Artifact) (Artifact, error) {
	var err error
	if a.Index != nil {
		a.Index, err = g.index(a.Index, 1)
	} else {
		a.Image, err = g.image(a.Image)
	}
	return a, err
}

// visit counts one more distinct manifest or index.
func (g *guard) visit(h v1.Hash, what string) error {
	if g.ctx.Err() != nil {
		return context.Cause(g.ctx)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen[h] {
		return nil
	}
	if len(g.seen) >= g.lim.Manifests {
		return overLimit("%s %s: more than %d distinct manifests and indexes in one image, the limit; %s", what, h, g.lim.Manifests, malformedHint)
	}
	g.seen[h] = true
	return nil
}

func (g *guard) index(idx v1.ImageIndex, depth int) (v1.ImageIndex, error) {
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("reading an index: %w", err)
	}
	if err := g.visit(d, "index"); err != nil {
		return nil, err
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index %s: %w", d, err)
	}
	if int64(len(raw)) > g.lim.ManifestSize {
		return nil, overLimit("index %s is %d bytes, over the limit of %s for an index; %s", d, len(raw), FormatSize(g.lim.ManifestSize), malformedHint)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index %s: %w", d, err)
	}
	if len(im.Manifests) > g.lim.IndexEntries {
		return nil, overLimit("index %s lists %d manifests, over the limit of %d for an index; %s", d, len(im.Manifests), g.lim.IndexEntries, malformedHint)
	}
	return &guardedIndex{imageIndex: idx, g: g, depth: depth, digest: d}, nil
}

// guardedIndex is an index whose children are guarded too.
type guardedIndex struct {
	imageIndex
	g      *guard
	depth  int
	digest v1.Hash
}

func (x *guardedIndex) Image(h v1.Hash) (v1.Image, error) {
	if err := x.g.visit(h, "manifest"); err != nil {
		return nil, err
	}
	img, err := x.imageIndex.Image(h)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s of index %s: %w", h, x.digest, err)
	}
	return x.g.image(img)
}

func (x *guardedIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	if x.depth+1 > x.g.lim.IndexDepth {
		return nil, overLimit("index %s nests indexes %d deep, over the limit of %d; %s", h, x.depth+1, x.g.lim.IndexDepth, malformedHint)
	}
	if x.g.ctx.Err() != nil {
		return nil, context.Cause(x.g.ctx)
	}
	child, err := x.imageIndex.ImageIndex(h)
	if err != nil {
		return nil, fmt.Errorf("reading index %s of index %s: %w", h, x.digest, err)
	}
	return x.g.index(child, x.depth+1)
}

// lazyManifest is an image whose manifest is made when asked for, at a cost (a docker
// archive's: its layers gzipped); its config and layers are checked without it.
type lazyManifest interface{ lazyManifest() }

func (g *guard) image(img v1.Image) (v1.Image, error) {
	gi := &guardedImage{Image: img, g: g}
	var m *v1.Manifest
	if _, gi.lazy = img.(lazyManifest); !gi.lazy {
		raw, err := img.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("reading the manifest: %w", err)
		}
		if int64(len(raw)) > g.lim.ManifestSize {
			return nil, overLimit("a manifest of %d bytes, over the limit of %s; %s", len(raw), FormatSize(g.lim.ManifestSize), malformedHint)
		}
		if m, err = img.Manifest(); err != nil {
			return nil, fmt.Errorf("reading the manifest: %w", err)
		}
		if len(m.Layers) > g.lim.Layers {
			return nil, overLimit("an image of %d layers, over the limit of %d; %s", len(m.Layers), g.lim.Layers, malformedHint)
		}
		// Checked before the config is fetched: a registry's would be read whole.
		if m.Config.Size > g.lim.ConfigSize {
			return nil, overLimit("image config %s is %d bytes, over the limit of %s; %s", m.Config.Digest, m.Config.Size, FormatSize(g.lim.ConfigSize), malformedHint)
		}
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	if int64(len(raw)) > g.lim.ConfigSize {
		return nil, overLimit("an image config of %d bytes, over the limit of %s; %s", len(raw), FormatSize(g.lim.ConfigSize), malformedHint)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	if len(cf.RootFS.DiffIDs) > g.lim.Layers {
		return nil, overLimit("an image of %d layers, over the limit of %d; %s", len(cf.RootFS.DiffIDs), g.lim.Layers, malformedHint)
	}
	if m != nil {
		// The diff IDs a layer must uncompress to are the config's, by position: not
		// what a library would compute from the layer itself.
		if len(m.Layers) != len(cf.RootFS.DiffIDs) {
			return nil, fmt.Errorf("the manifest lists %d layers and its config %d diff IDs: the image is corrupt", len(m.Layers), len(cf.RootFS.DiffIDs))
		}
		gi.diffIDs = make([]v1.Hash, len(m.Layers))
		gi.byDigest = map[v1.Hash]v1.Hash{}
		for i, l := range m.Layers {
			id := cf.RootFS.DiffIDs[i]
			if have, ok := gi.byDigest[l.Digest]; ok && have != id {
				return nil, fmt.Errorf("layer %s is given two diff IDs (%s and %s): the image is corrupt", l.Digest, have, id)
			}
			gi.diffIDs[i], gi.byDigest[l.Digest] = id, id
		}
	}
	return gi, nil
}

// guardedImage is an image whose layers are checked as they are read.
type guardedImage struct {
	v1.Image
	g        *guard
	lazy     bool                // a docker archive's: its layers know their diff IDs
	diffIDs  []v1.Hash           // by the manifest's layer order
	byDigest map[v1.Hash]v1.Hash // diff ID by layer digest
}

func (i *guardedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	if !i.lazy && len(ls) != len(i.diffIDs) {
		return nil, fmt.Errorf("%d layers for %d diff IDs: the image is corrupt", len(ls), len(i.diffIDs))
	}
	out := make([]v1.Layer, len(ls))
	for n, l := range ls {
		var id v1.Hash
		if !i.lazy {
			id = i.diffIDs[n]
		}
		out[n] = i.g.layer(l, id)
	}
	return out, nil
}

func (i *guardedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	id, ok := i.byDigest[h]
	if !ok && !i.lazy {
		// The config, asked for as a blob: not a layer to uncompress.
		return l, nil
	}
	return i.g.layer(l, id), nil
}

func (i *guardedImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDiffID(h)
	if err != nil {
		return nil, err
	}
	return i.g.layer(l, h), nil
}

// layer checks l against diffID (zero: the layer's own, a docker archive's, which
// comes from the config), keeping a registry's layer mountable: a push to another
// repository of that registry mounts it rather than reading it.
func (g *guard) layer(l v1.Layer, diffID v1.Hash) v1.Layer {
	if ml, ok := l.(*remote.MountableLayer); ok {
		return &remote.MountableLayer{Layer: &checkedLayer{Layer: ml.Layer, g: g, diffID: diffID}, Reference: ml.Reference}
	}
	return &checkedLayer{Layer: l, g: g, diffID: diffID}
}

// checkedLayer is a layer whose bytes are checked as they are read.
type checkedLayer struct {
	v1.Layer
	g      *guard
	diffID v1.Hash
}

// DiffID is the config's: a library could compute it from the layer instead.
func (l *checkedLayer) DiffID() (v1.Hash, error) {
	if l.diffID != (v1.Hash{}) {
		return l.diffID, nil
	}
	return l.Layer.DiffID()
}

func (l *checkedLayer) check() (layerCheck, error) {
	digest, err := l.Layer.Digest()
	if err != nil {
		return layerCheck{}, err
	}
	size, err := l.Layer.Size()
	if err != nil {
		return layerCheck{}, err
	}
	diffID, err := l.DiffID()
	if err != nil {
		return layerCheck{}, fmt.Errorf("layer %s: its diff ID: %w", digest, err)
	}
	what := "layer " + digest.String()
	if size > l.g.lim.LayerSize {
		return layerCheck{}, overLimit("%s is %d bytes, over the limit of %s (--max-layer-size); %s", what, size, FormatSize(l.g.lim.LayerSize), layerLimitHint)
	}
	return layerCheck{what: what, digest: digest, size: size, diffID: diffID, maxSize: l.g.lim.LayerSize}, nil
}

func (l *checkedLayer) Compressed() (io.ReadCloser, error) {
	c, err := l.check()
	if err != nil {
		return nil, err
	}
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", c.what, err)
	}
	return newCheckedReader(l.g.ctx, rc, c), nil
}

// Uncompressed needs the diff ID only: a docker archive's plain layer has no
// digest until it is gzipped.
func (l *checkedLayer) Uncompressed() (io.ReadCloser, error) {
	diffID, err := l.DiffID()
	if err != nil {
		return nil, fmt.Errorf("a layer's diff ID: %w", err)
	}
	what := "layer with diff ID " + diffID.String()
	rc, err := l.Layer.Uncompressed()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return newUncompressedReader(l.g.ctx, rc, what, diffID, l.g.lim.LayerSize), nil
}

// unwrapLayer is the layer a guard or a progress counter wraps.
func unwrapLayer(l v1.Layer) v1.Layer {
	for {
		switch w := l.(type) {
		case *checkedLayer:
			l = w.Layer
		case *countedLayer:
			l = w.Layer
		default:
			return l
		}
	}
}
