package kit

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// OffsetNone is the offset of a field the app's version does not have (OFFSET_NONE in
// bpf/include/common.h).
const OffsetNone = ^uint64(0)

// offsetPrefix starts the name of every field offset variable in a BPF object.
const offsetPrefix = "off_"

// VarName is the name of the BPF global that holds a field's offset: "off_" and the
// package's name, the struct's and the field's, joined by "_". A golang.org/x package's
// name takes an "x_": x/net/http2 has the same types as the standard library's own
// copies of it, which one program may read side by side.
//
//	net/http.Request.Method                    off_http_Request_Method
//	internal/runtime/maps.Map.dirPtr           off_maps_Map_dirPtr
//	net/http/internal/http2.responseWriter.rws off_http2_responseWriter_rws
//	golang.org/x/net/http2.responseWriter.rws  off_x_http2_responseWriter_rws
//	github.com/redis/go-redis/v9.Options       off_go_redis_Options_...
//
// A field is declared once, in its spec; the C code names it this way, and the kit sets
// it: there is no list of names to keep in step.
func VarName(f offsets.FieldRef) string {
	dot := strings.LastIndexByte(f.Struct, '.')
	if dot < 0 {
		return offsetPrefix + identifier(f.Struct) + "_" + identifier(f.Field)
	}
	pkg, typ := f.Struct[:dot], f.Struct[dot+1:]
	elems := strings.Split(pkg, "/")
	name := elems[len(elems)-1]
	if len(elems) > 1 && majorVersion.MatchString(name) { // a module's /vN
		name = elems[len(elems)-2]
	}
	if strings.HasPrefix(pkg, "golang.org/x/") {
		name = "x_" + name
	}
	return offsetPrefix + identifier(name) + "_" + identifier(typ) + "_" + identifier(f.Field)
}

var majorVersion = regexp.MustCompile(`^v[0-9]+$`)

// identifier replaces what C does not allow in a name by '_'.
func identifier(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// CheckFields checks that the field offset variables of a BPF object and the fields of
// its library's specs agree: every off_* variable is the VarName of a spec field, every
// spec field has its variable, and no two fields share a name. The kit refuses to load
// an object that fails it, and a test holds every library to it.
func CheckFields(specs []offsets.Spec, obj *ebpf.CollectionSpec) error {
	fields := map[string]offsets.FieldRef{} // variable -> field
	var errs []error
	for _, s := range specs {
		for _, f := range s.Fields {
			name := VarName(f.FieldRef)
			if other, ok := fields[name]; ok && other != f.FieldRef {
				errs = append(errs, fmt.Errorf("fields %s and %s are both %s", other, f.FieldRef, name))
			}
			fields[name] = f.FieldRef
			if _, ok := obj.Variables[name]; !ok {
				errs = append(errs, fmt.Errorf("spec %s reads %s, but the BPF object has no variable %s", s.Name, f.FieldRef, name))
			}
		}
	}
	var names []string
	for name := range obj.Variables {
		if strings.HasPrefix(name, offsetPrefix) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if _, ok := fields[name]; !ok {
			errs = append(errs, fmt.Errorf("the BPF object's variable %s is no field of a spec: it would never be set", name))
		}
	}
	return errors.Join(errs...)
}

// offsetValues are the values of the object's field offset variables for the app: from
// the reports of the specs that are enabled, OffsetNone for the rest.
func offsetValues(specs []offsets.Spec, reps Reports, obj *ebpf.CollectionSpec) map[string]uint64 {
	values := map[string]uint64{}
	for name := range obj.Variables {
		if strings.HasPrefix(name, offsetPrefix) {
			values[name] = OffsetNone
		}
	}
	for _, s := range specs {
		rep, ok := reps[s.Name]
		if !ok || !rep.Enabled {
			continue
		}
		for _, f := range s.Fields {
			if off, ok := rep.FieldOffset(f.FieldRef); ok {
				values[VarName(f.FieldRef)] = off
			}
		}
	}
	return values
}
