package launcher

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// Credential is who the app runs as.
type Credential struct {
	UID, GID int
	Groups   []int  // supplementary groups
	Home     string // from /etc/passwd; "/" for a user it does not list, as runc does
}

// ResolveUser reads a --user value the way container runtimes read USER:
// NAME or UID, optionally followed by :GROUP or :GID. Names are looked up in
// /etc/passwd and /etc/group of the filesystem the launcher runs in.
//
//   - NAME: its uid and primary gid from /etc/passwd, its groups from /etc/group.
//   - UID: the same if /etc/passwd has it; otherwise gid 0 and no supplementary
//     groups, as Docker and runc do for an unknown numeric user.
//   - :GROUP or :GID overrides the primary group.
func ResolveUser(spec string) (*Credential, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" || (hasGroup && group == "") {
		return nil, fmt.Errorf("--user %q: want NAME|UID[:GROUP|GID]", spec)
	}
	cred := &Credential{}
	var u *user.User
	if isNumber(name) {
		uid, err := parseID(name)
		if err != nil {
			return nil, fmt.Errorf("--user %q: uid %s", spec, err)
		}
		cred.UID = uid
		u, _ = user.LookupId(name) // unknown numeric users are allowed
	} else {
		var err error
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("--user %q: no user %q in /etc/passwd", spec, name)
		}
		if cred.UID, err = parseID(u.Uid); err != nil {
			return nil, fmt.Errorf("--user %q: /etc/passwd gives uid %s: %s", spec, u.Uid, err)
		}
	}
	cred.Home = "/"
	if u != nil {
		if u.HomeDir != "" {
			cred.Home = u.HomeDir
		}
		var err error
		if cred.GID, err = parseID(u.Gid); err != nil {
			return nil, fmt.Errorf("--user %q: /etc/passwd gives gid %s: %s", spec, u.Gid, err)
		}
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				g, err := parseID(id)
				if err != nil {
					return nil, fmt.Errorf("--user %q: /etc/group gives group id %s: %s", spec, id, err)
				}
				cred.Groups = append(cred.Groups, g)
			}
		}
	}
	if hasGroup {
		var err error
		if isNumber(group) {
			if cred.GID, err = parseID(group); err != nil {
				return nil, fmt.Errorf("--user %q: gid %s", spec, err)
			}
		} else {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				return nil, fmt.Errorf("--user %q: no group %q in /etc/group", spec, group)
			}
			if cred.GID, err = parseID(g.Gid); err != nil {
				return nil, fmt.Errorf("--user %q: /etc/group gives gid %s: %s", spec, g.Gid, err)
			}
		}
	}
	return cred, nil
}

// GroupsInherit is the --groups value that gives the app the launcher's own
// supplementary groups.
const GroupsInherit = "inherit"

// ParseGroups reads --groups: comma-separated GIDs, the app's supplementary groups
// exactly; "" is none; "inherit" is the launcher's own. An OCI runtime wrapper gives
// the launcher its spec's additionalGids and passes "inherit", so that the app gets the
// groups runc would have given it, not /etc/group's, however many there are (tens of
// thousands would not fit in an argument).
func ParseGroups(list string) ([]int, error) {
	if list == GroupsInherit {
		groups, err := syscall.Getgroups()
		if err != nil {
			return nil, fmt.Errorf("--groups inherit: read the launcher's groups: %w", err)
		}
		if groups == nil {
			groups = []int{}
		}
		return groups, nil
	}
	groups := []int{}
	for _, g := range strings.Split(list, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		id, err := parseID(g)
		if err != nil {
			return nil, fmt.Errorf("--groups %q: %s", list, err)
		}
		groups = append(groups, id)
	}
	return groups, nil
}

// maxID is the largest user or group ID: IDs are 32-bit, and 2^32-1 is (uid_t)-1, which
// the set*id calls read as "leave unchanged".
const maxID = 1<<32 - 2

// isNumber reports whether s looks like an ID (digits, maybe signed), not a name.
func isNumber(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// parseID reads a user or group ID: 0 to 4294967294, nothing cut or wrapped (the
// kernel takes 32 bits: 4294967296 would become 0, root).
func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxID {
		return 0, fmt.Errorf("%s is not an ID from 0 to %d", s, maxID)
	}
	return int(n), nil
}

// appEnv is the launcher's environment for an app run as cred. A container runtime sets
// HOME for the container's user when the image does not: the launcher's, root's, when
// an image was wrapped to start the launcher as root and the app as its user. The app
// gets its own user's HOME instead, as the runtime would have set it; a HOME that is
// not root's own was set on purpose and stays.
func appEnv(env []string, cred *Credential) []string {
	if cred == nil {
		return env
	}
	rootHome := "/root"
	if u, err := user.LookupId("0"); err == nil && u.HomeDir != "" {
		rootHome = u.HomeDir
	}
	out := make([]string, 0, len(env)+1)
	seen := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			seen = true
			if v == rootHome && os.Geteuid() == 0 {
				kv = "HOME=" + cred.Home
			}
		}
		out = append(out, kv)
	}
	if !seen {
		out = append(out, "HOME="+cred.Home)
	}
	return out
}
