package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestResolveUserIn(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:root\n"), 0o644)
	for spec, want := range map[string]execUser{
		"":          {uid: 0, gid: 0, home: "/root", groups: []uint32{0, 10}},
		"app":       {uid: 1000, gid: 1000, home: "/home/app", groups: []uint32{1000, 50}},
		"1000":      {uid: 1000, gid: 1000, home: "/home/app", groups: []uint32{1000, 50}},
		"app:staff": {uid: 1000, gid: 50, home: "/home/app"},
		"app:7":     {uid: 1000, gid: 7, home: "/home/app"},
		"4242":      {uid: 4242, gid: 0, home: "/"},
		"4242:4243": {uid: 4242, gid: 4243, home: "/"},
		":staff":    {uid: 0, gid: 50, home: "/root"},
	} {
		got, err := resolveUserIn(root, spec)
		if err != nil {
			t.Errorf("%q: %v", spec, err)
			continue
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%q: %+v, want %+v", spec, *got, want)
		}
	}
	for spec, msg := range map[string]string{
		"nobody":    "unable to find user nobody",
		"app:nogrp": "unable to find group nogrp",
		"app:":      `invalid user "app:"`,
	} {
		if _, err := resolveUserIn(root, spec); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", spec, err, msg)
		}
	}
}
