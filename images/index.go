package images

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/otel-go-launcher/otel-go-launcher/images/internal/rawconfig"
)

// Artifact is what a reference names: one image or a multi-platform index.
type Artifact struct {
	Image v1.Image
	Index v1.ImageIndex
	// Name is the name its source gave it, if any: the registry reference, the tag of
	// a docker archive or a layout. It names a copy written where a name is needed.
	Name string
}

// Digest is the artifact's manifest digest.
func (a Artifact) Digest() (v1.Hash, error) {
	if a.Index != nil {
		return a.Index.Digest()
	}
	return a.Image.Digest()
}

// Wrap wraps an image, or every image of an index, each with the launcher of its
// platform. platforms, when not empty, selects the images of an index to keep (and
// checks a single image's platform); a platform no launcher source supplies is an
// error that names it. Attestation manifests of an index describe the images as they
// were built, not as wrapped: they are left out. Each distinct index and image is
// wrapped once, however often the source names it; Wrap stops once ctx is done.
func Wrap(ctx context.Context, src Artifact, launchers Launchers, platforms []v1.Platform, o Options) (Artifact, error) {
	if src.Index == nil {
		p, err := Platform(src.Image)
		if err != nil {
			return Artifact{}, err
		}
		if !selected(p, platforms) {
			return Artifact{}, fmt.Errorf("the image is for %s, not %s", p, platformList(platforms))
		}
		img, err := wrapOne(ctx, src.Image, p, launchers, o)
		return Artifact{Image: img}, err
	}
	w := &indexWrapper{ctx: ctx, launchers: launchers, platforms: platforms, o: o,
		images: map[string]wrappedImage{}, indexes: map[v1.Hash]wrappedIndex{}}
	idx, err := w.index(src.Index)
	return Artifact{Index: idx}, err
}

func wrapOne(ctx context.Context, img v1.Image, p v1.Platform, launchers Launchers, o Options) (v1.Image, error) {
	if p.OS != "linux" {
		return nil, fmt.Errorf("the image is for %s: the launcher runs Linux programs only", orUnknown(p.OS))
	}
	layer, err := launchers.Layer(ctx, p)
	if err != nil {
		return nil, err
	}
	wrapped, err := WrapImage(img, layer, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return wrapped, nil
}

// indexWrapper wraps an index and the indexes in it, remembering what it wrapped: an
// index that names one child twice, at every level, would otherwise cost 2^depth.
type indexWrapper struct {
	ctx       context.Context
	launchers Launchers
	platforms []v1.Platform
	o         Options
	images    map[string]wrappedImage // by digest and platform
	indexes   map[v1.Hash]wrappedIndex
}

type wrappedImage struct {
	img     v1.Image // nil: not selected
	digest  v1.Hash
	size    int64
	upgrade bool // it was wrapped before
}

type wrappedIndex struct {
	idx    v1.ImageIndex
	digest v1.Hash
	size   int64
	err    error
}

func (w *indexWrapper) index(idx v1.ImageIndex) (v1.ImageIndex, error) {
	raw, err := idx.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the index: %w", err)
	}
	obj, err := rawconfig.Object(raw, "index")
	if err != nil {
		return nil, err
	}
	var descs []json.RawMessage
	if err := decodeOptional(obj, "manifests", &descs); err != nil {
		return nil, err
	}
	out := &editedIndex{base: idx, images: map[v1.Hash]v1.Image{}, indexes: map[v1.Hash]v1.ImageIndex{}}
	var kept []json.RawMessage
	upgrade := true // every image in it was wrapped before
	for _, rawDesc := range descs {
		if w.ctx.Err() != nil {
			return nil, context.Cause(w.ctx)
		}
		var d v1.Descriptor
		if err := json.Unmarshal(rawDesc, &d); err != nil {
			return nil, fmt.Errorf("an index entry: %w", err)
		}
		fields, err := rawconfig.Object(rawDesc, "index entry")
		if err != nil {
			return nil, err
		}
		var digest v1.Hash
		var size int64
		switch {
		case isAttestation(d):
			continue
		case d.MediaType.IsIndex():
			c, ok := w.indexes[d.Digest]
			if !ok {
				c = w.child(idx, d.Digest)
				w.indexes[d.Digest] = c
			}
			if c.err != nil {
				return nil, c.err
			}
			digest, size = c.digest, c.size
			out.indexes[digest] = c.idx
		case d.MediaType.IsImage():
			c, err := w.image(idx, d)
			if err != nil {
				return nil, err
			}
			if c.img == nil {
				continue
			}
			upgrade = upgrade && c.upgrade
			digest, size = c.digest, c.size
			out.images[digest] = c.img
		default:
			return nil, fmt.Errorf("index entry %s: media type %s is neither an image nor an index", d.Digest, d.MediaType)
		}
		fields["digest"] = rawconfig.Must(digest)
		fields["size"] = rawconfig.Must(size)
		kept = append(kept, rawconfig.Must(fields))
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("the index has no image for %s", platformList(w.platforms))
	}
	obj["manifests"] = rawconfig.Must(kept)
	// As for an image: a first wrap names its source, an upgrade keeps the original.
	annotations := map[string]string{}
	if err := decodeOptional(obj, "annotations", &annotations); err != nil {
		return nil, err
	}
	if !upgrade || annotations[AnnotationBaseDigest] == "" {
		d, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		annotations[AnnotationBaseDigest] = d.String()
		delete(annotations, AnnotationBaseName)
		if w.o.BaseName != "" && !upgrade {
			annotations[AnnotationBaseName] = w.o.BaseName
		}
	}
	obj["annotations"] = rawconfig.Must(annotations)
	if out.raw, err = json.Marshal(obj); err != nil {
		return nil, err
	}
	if out.mt, err = idx.MediaType(); err != nil {
		return nil, err
	}
	if out.parsed, err = v1.ParseIndexManifest(bytes.NewReader(out.raw)); err != nil {
		return nil, fmt.Errorf("the edited index: %w", err)
	}
	return out, nil
}

// child wraps the index h of idx.
func (w *indexWrapper) child(idx v1.ImageIndex, h v1.Hash) wrappedIndex {
	child, err := idx.ImageIndex(h)
	if err != nil {
		return wrappedIndex{err: err}
	}
	wrapped, err := w.index(child)
	if err != nil {
		return wrappedIndex{err: err}
	}
	digest, size, err := digestAndSize(wrapped)
	return wrappedIndex{idx: wrapped, digest: digest, size: size, err: err}
}

// image wraps the image d of idx for its platform, once for each.
func (w *indexWrapper) image(idx v1.ImageIndex, d v1.Descriptor) (wrappedImage, error) {
	key := d.Digest.String()
	if d.Platform != nil {
		key += " " + d.Platform.String()
	}
	if c, ok := w.images[key]; ok {
		return c, nil
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return wrappedImage{}, err
	}
	p := d.Platform
	if p == nil {
		have, err := Platform(img)
		if err != nil {
			return wrappedImage{}, err
		}
		p = &have
	}
	var c wrappedImage
	if selected(*p, w.platforms) {
		if c.upgrade, _, err = Wrapped(img); err != nil {
			return wrappedImage{}, err
		}
		if c.img, err = wrapOne(w.ctx, img, *p, w.launchers, w.o); err != nil {
			return wrappedImage{}, err
		}
		if c.digest, c.size, err = digestAndSize(c.img); err != nil {
			return wrappedImage{}, err
		}
	}
	w.images[key] = c
	return c, nil
}

// digestAndSize describes a manifest for its index entry.
func digestAndSize(m interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
}) (v1.Hash, int64, error) {
	d, err := m.Digest()
	if err != nil {
		return v1.Hash{}, 0, err
	}
	n, err := m.Size()
	return d, n, err
}

// isAttestation says whether an index entry is a build attestation (BuildKit's
// provenance and SBOM manifests, platform unknown/unknown).
func isAttestation(d v1.Descriptor) bool {
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" ||
		(d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown")
}

func selected(p v1.Platform, platforms []v1.Platform) bool {
	return len(platforms) == 0 || slices.ContainsFunc(platforms, func(want v1.Platform) bool { return platformMatches(p, want) })
}

func platformList(platforms []v1.Platform) string {
	if len(platforms) == 0 {
		return "any platform"
	}
	var s []string
	for _, p := range platforms {
		s = append(s, p.String())
	}
	return fmt.Sprint(s)
}

// editedIndex is an index whose entries point at wrapped images (or indexes).
type editedIndex struct {
	base    v1.ImageIndex
	raw     []byte
	parsed  *v1.IndexManifest
	mt      types.MediaType
	images  map[v1.Hash]v1.Image
	indexes map[v1.Hash]v1.ImageIndex
}

var _ v1.ImageIndex = (*editedIndex)(nil)

func (x *editedIndex) MediaType() (types.MediaType, error)       { return x.mt, nil }
func (x *editedIndex) RawManifest() ([]byte, error)              { return x.raw, nil }
func (x *editedIndex) IndexManifest() (*v1.IndexManifest, error) { return x.parsed.DeepCopy(), nil }
func (x *editedIndex) Size() (int64, error)                      { return int64(len(x.raw)), nil }
func (x *editedIndex) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(x.raw))
	return h, err
}

func (x *editedIndex) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := x.images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("the wrapped index has no image %s", h)
}

func (x *editedIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	if idx, ok := x.indexes[h]; ok {
		return idx, nil
	}
	return nil, fmt.Errorf("the wrapped index has no index %s", h)
}
