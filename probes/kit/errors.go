package kit

// Stage is where instrumenting an app with a probe failed.
type Stage string

const (
	StageResolve   Stage = "resolve"   // its functions are not in the binary, or its version is unsupported
	StageLoad      Stage = "load"      // its BPF programs did not load (verify)
	StageAttach    Stage = "attach"    // its uprobes (or other programs) did not attach
	StageFields    Stage = "fields"    // struct field offsets it reads are unknown
	StageConfigure Stage = "configure" // its variables or ring buffer could not be set up
	StageRun       Stage = "run"       // reading its events or counters failed
	StageDetach    Stage = "detach"    // detaching or freeing it failed
)

// Error is what went wrong with one probe (or all the probes of a library).
type Error struct {
	Probe string // "net/http.client", or "net/http.server, net/http.client"
	Stage Stage
	Err   error
}

func (e *Error) Error() string { return e.Probe + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// errorf makes an *Error with a message as its cause.
func errorf(probe string, stage Stage, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Probe: probe, Stage: stage, Err: err}
}
