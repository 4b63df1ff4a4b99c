package kit

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

func TestVarName(t *testing.T) {
	for f, want := range map[offsets.FieldRef]string{
		{Struct: "net/http.Request", Field: "Method"}:                             "off_http_Request_Method",
		{Struct: "net/url.URL", Field: "RawQuery"}:                                "off_url_URL_RawQuery",
		{Struct: "runtime.hmap", Field: "B"}:                                      "off_runtime_hmap_B",
		{Struct: "internal/runtime/maps.groupsReference", Field: "lengthMask"}:    "off_maps_groupsReference_lengthMask",
		{Struct: "github.com/redis/go-redis/v9.baseClient", Field: "opt"}:         "off_go_redis_baseClient_opt",
		{Struct: "google.golang.org/grpc/internal/transport.Stream", Field: "id"}: "off_transport_Stream_id",
		{Struct: "gopkg.in/yaml.v3.Node", Field: "Kind"}:                          "off_yaml_v3_Node_Kind",
		{Struct: "net/http/internal/http2.responseWriter", Field: "rws"}:          "off_http2_responseWriter_rws",
		{Struct: "golang.org/x/net/http2.responseWriter", Field: "rws"}:           "off_x_http2_responseWriter_rws",
		{Struct: "golang.org/x/net/http2/hpack.HeaderField", Field: "Name"}:       "off_x_hpack_HeaderField_Name",
	} {
		if got := VarName(f); got != want {
			t.Errorf("%s: %s, want %s", f, got, want)
		}
	}
}

// CheckFields refuses what would leave a variable unset or a field unread.
func TestCheckFields(t *testing.T) {
	spec := offsets.Spec{Name: "x.server", Fields: []offsets.FieldSpec{
		{FieldRef: offsets.FieldRef{Struct: "net/http.Request", Field: "Method"}},
		{FieldRef: offsets.FieldRef{Struct: "net/http.Request", Field: "URL"}},
	}}
	obj := &ebpf.CollectionSpec{Variables: map[string]*ebpf.VariableSpec{
		"off_http_Request_Method": nil, "off_http_Request_Host": nil, "server_enabled": nil,
	}}
	err := CheckFields([]offsets.Spec{spec}, obj)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"spec x.server reads net/http.Request.URL, but the BPF object has no variable off_http_Request_URL",
		"variable off_http_Request_Host is no field of a spec"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: no %q", err, want)
		}
	}
	clash := offsets.Spec{Name: "y", Fields: []offsets.FieldSpec{
		{FieldRef: offsets.FieldRef{Struct: "crypto/rand.Reader", Field: "n"}},
		{FieldRef: offsets.FieldRef{Struct: "math/rand.Reader", Field: "n"}},
	}}
	if err := CheckFields([]offsets.Spec{clash}, &ebpf.CollectionSpec{Variables: map[string]*ebpf.VariableSpec{"off_rand_Reader_n": nil}}); err == nil ||
		!strings.Contains(err.Error(), "are both off_rand_Reader_n") {
		t.Errorf("two fields, one name: %v", err)
	}
}

func TestRecordPrefixAs(t *testing.T) {
	type rec struct {
		Kind uint32
		N    uint32
		Text [8]byte
	}
	var buf rec
	buf.Text = [8]byte{9, 9, 9, 9, 9, 9, 9, 9} // a previous record's
	raw := []byte{1, 0, 0, 0, 2, 0, 0, 0, 'a', 'b'}
	got := RecordPrefixAs(raw, &buf, 8)
	if got == nil || got.Kind != 1 || got.N != 2 || got.Text != [8]byte{'a', 'b'} {
		t.Errorf("a short record: %+v", got)
	}
	if got := RecordPrefixAs(raw[:7], &buf, 8); got != nil {
		t.Errorf("shorter than its fixed part: %+v", got)
	}
	full := append(raw, 0, 0, 0, 0, 0, 0)
	if got := RecordPrefixAs(full, &buf, 8); got == nil || got == &buf || got.Text != [8]byte{'a', 'b'} {
		t.Errorf("a whole record is read in place: %+v", got)
	}
}
