package images

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits bound the work and the disk and memory a wrap spends on its input: an image,
// an archive or a layout is untrusted (a tenant's), and a few kilobytes of it must not
// cost hours or gigabytes. Each is far above what real images use.
type Limits struct {
	// IndexDepth is how deep indexes may nest below the reference's own (real
	// images: 1, an index of images; OCI layouts sometimes 2).
	IndexDepth int
	// IndexEntries is how many manifests one index may list (index.json included);
	// multi-platform images list a few dozen with their attestations.
	IndexEntries int
	// Manifests is how many distinct manifests and indexes one reference may lead to.
	Manifests int
	// ManifestSize bounds an index or a manifest (registries take 4 MiB).
	ManifestSize int64
	// ConfigSize bounds an image config.
	ConfigSize int64
	// Layers is how many layers one image may have (overlayfs stacks 128 at most).
	Layers int
	// LayerSize bounds a layer, stored and uncompressed; also an archive's entry.
	LayerSize int64
	// ArchiveEntries is how many entries an archive (docker-archive:, oci-archive:)
	// may hold.
	ArchiveEntries int
}

// DefaultLayerSize is the default bound on a layer: real layers reach several GiB
// (CUDA and model images), none 64.
const DefaultLayerSize = 64 << 30

// DefaultLimits are the limits a wrap runs with unless told otherwise.
func DefaultLimits() Limits {
	return Limits{
		IndexDepth:     8,
		IndexEntries:   1024,
		Manifests:      1024,
		ManifestSize:   4 << 20,
		ConfigSize:     8 << 20,
		Layers:         1024,
		LayerSize:      DefaultLayerSize,
		ArchiveEntries: 100_000,
	}
}

// orDefaults fills the limits left zero with the defaults.
func (l Limits) orDefaults() Limits {
	d := DefaultLimits()
	pick := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pick64 := func(v *int64, def int64) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&l.IndexDepth, d.IndexDepth)
	pick(&l.IndexEntries, d.IndexEntries)
	pick(&l.Manifests, d.Manifests)
	pick64(&l.ManifestSize, d.ManifestSize)
	pick64(&l.ConfigSize, d.ConfigSize)
	pick(&l.Layers, d.Layers)
	pick64(&l.LayerSize, d.LayerSize)
	pick(&l.ArchiveEntries, d.ArchiveEntries)
	return l
}

// ErrLimit is wrapped by every error that refuses input for going over a limit.
var ErrLimit = errors.New("over a limit")

// limitError says what went over which limit, and what to do, in one line.
type limitError struct{ msg string }

func (e *limitError) Error() string        { return e.msg }
func (e *limitError) Is(target error) bool { return target == ErrLimit }

func overLimit(format string, args ...any) error {
	return &limitError{msg: fmt.Sprintf(format, args...)}
}

// layerLimitHint is what to do about a layer over --max-layer-size.
const layerLimitHint = "if the image is genuine, raise --max-layer-size"

// malformedHint is what to do about input no real image has.
const malformedHint = "the input is malformed or hostile; no real image has this"

// FormatSize writes n bytes the way ParseSize reads them: the largest binary unit
// that divides it (64GiB, 512MiB, 1000).
func FormatSize(n int64) string {
	for _, u := range sizeUnits {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

var sizeUnits = []struct {
	suffix string
	n      int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// ParseSize reads a byte count: a number, optionally followed by KiB, MiB, GiB or TiB
// (or K, M, G, T, meaning the same).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = v, u.n
			break
		}
		if v, ok := strings.CutSuffix(t, u.suffix[:1]); ok {
			t, mult = v, u.n
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with KiB, MiB, GiB or TiB, e.g. 100GiB", s)
	}
	return n * mult, nil
}
