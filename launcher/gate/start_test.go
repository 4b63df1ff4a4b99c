package gate

import "testing"

// A command line forks the gate process at init only when it certainly runs an app:
// never for a subcommand (which would otherwise trap the signals meant for it).
func TestRunsApp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"launch", "--", "/app"}, true},
		{[]string{"launch", "/app", "-x"}, true},
		{[]string{"launch", "--log-level", "debug", "--", "/app", "doctor"}, true},
		{[]string{"launch", "doctor"}, false},
		{[]string{"launch", "inspect", "--json", "/app"}, false},
		{[]string{"launch", "--log-level", "debug", "doctor"}, false},
		{[]string{"launch", "--help"}, false},
		{[]string{"launch"}, false},
	} {
		if got := runsApp(c.args); got != c.want {
			t.Errorf("%q: %v, want %v", c.args, got, c.want)
		}
	}
}
