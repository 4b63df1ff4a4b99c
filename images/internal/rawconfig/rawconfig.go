// Package rawconfig edits JSON configuration documents (image configs, OCI runtime
// specs) as raw objects, so that every member the editor does not know is written back
// as it was read.
package rawconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Object decodes a JSON object; what names the document in the error.
func Object(raw []byte, what string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("the %s is not a JSON object: %w", what, err)
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	return m, nil
}

// Optional decodes obj[key] into v; an absent or null member leaves v as it is.
func Optional(obj map[string]json.RawMessage, key string, v any) error {
	raw, ok := obj[key]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%q: %w", key, err)
	}
	return nil
}

// Must marshals values that cannot fail to marshal (strings, slices and maps of them,
// raw JSON that came from a decoder).
func Must(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// SetEnv sets NAME=VALUE entries in an environment list, replacing an entry of the same
// name where it stands and appending the others.
func SetEnv(env, add []string) []string {
	out := slices.Clone(env)
	for _, kv := range add {
		key, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(e string) bool { k, _, _ := strings.Cut(e, "="); return k == key })
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}
