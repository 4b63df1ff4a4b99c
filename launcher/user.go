package launcher

import (
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// Credential is who the app runs as.
type Credential struct {
	UID, GID int
	Groups   []int // supplementary groups
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
	if uid, err := strconv.Atoi(name); err == nil {
		if uid < 0 {
			return nil, fmt.Errorf("--user %q: negative uid", spec)
		}
		cred.UID = uid
		u, _ = user.LookupId(name) // unknown numeric users are allowed
	} else {
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("--user %q: no user %q in /etc/passwd", spec, name)
		}
		cred.UID, _ = strconv.Atoi(u.Uid)
	}
	if u != nil {
		cred.GID, _ = strconv.Atoi(u.Gid)
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := strconv.Atoi(id); err == nil {
					cred.Groups = append(cred.Groups, g)
				}
			}
		}
	}
	if hasGroup {
		if gid, err := strconv.Atoi(group); err == nil {
			if gid < 0 {
				return nil, fmt.Errorf("--user %q: negative gid", spec)
			}
			cred.GID = gid
		} else {
			g, err := user.LookupGroup(group)
			if err != nil {
				return nil, fmt.Errorf("--user %q: no group %q in /etc/group", spec, group)
			}
			cred.GID, _ = strconv.Atoi(g.Gid)
		}
	}
	return cred, nil
}
