package dockerfile

import (
	"net/url"
	"strings"
)

// RedactURL hides the password of a URL with credentials
// ("https://user:xxxxx@host/..."), as BuildKit does, for everything that is
// printed or recorded: step text, history, errors. Anything that is not
// such a URL is returned unchanged.
func RedactURL(s string) string {
	if !strings.Contains(s, "@") || !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		return u.Redacted()
	}
	return s
}
