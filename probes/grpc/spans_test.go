package grpc

import "testing"

func TestStatusCodes(t *testing.T) {
	for c, want := range map[uint32]string{0: "OK", 1: "CANCELLED", 4: "DEADLINE_EXCEEDED", 12: "UNIMPLEMENTED", 16: "UNAUTHENTICATED", 17: "17"} {
		if got := statusCode(c); got != want {
			t.Errorf("%d: %s, want %s", c, got, want)
		}
	}
	// The conventions' server errors, exactly.
	var errs []uint32
	for c := uint32(0); c <= 17; c++ {
		if serverError(c) {
			errs = append(errs, c)
		}
	}
	if want := []uint32{2, 4, 12, 13, 14, 15}; len(errs) != len(want) {
		t.Errorf("server errors %v, want %v", errs, want)
	} else {
		for i := range want {
			if errs[i] != want[i] {
				t.Errorf("server errors %v, want %v", errs, want)
			}
		}
	}
}

func TestTargetAddress(t *testing.T) {
	for target, want := range map[string]struct {
		host string
		port int
	}{
		"localhost:50051":                 {"localhost", 50051},
		"dns:///api.example.com:443":      {"api.example.com", 443},
		"dns://8.8.8.8/api.example.com:8": {"api.example.com", 8},
		"passthrough:///127.0.0.1:9000":   {"127.0.0.1", 9000},
		"[::1]:7000":                      {"::1", 7000},
		"api.example.com":                 {"api.example.com", 0},
		"unix:///run/app.sock":            {"/run/app.sock", 0},
		"unix:app.sock":                   {"app.sock", 0},
	} {
		if h, p := targetAddress(target); h != want.host || p != want.port {
			t.Errorf("%s: %s %d, want %s %d", target, h, p, want.host, want.port)
		}
	}
}
