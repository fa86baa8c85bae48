// limits_test.go tests the bounds on what one request or client can make
// the server hold: request bodies of at most maxBodyBytes (413 above,
// without reading the rest), at most MAX_CONNECTIONS connections open at
// once, and the recipes one account may create (RECIPE_CREATION_BURST).
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jsonBodyOfSize is a signup body of exactly size bytes.
func jsonBodyOfSize(size int) string {
	head := `{"email":"big@example.com","password":"password123","pad":"`
	return head + strings.Repeat("x", size-len(head)-2) + `"}`
}

func TestRequestBodiesAreCappedAt64KiB(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	formOfSize := func(size int) string {
		head := url.Values{"username": {"cook@example.com"}, "password": {"recipe-password"}}.Encode() + "&pad="
		return head + strings.Repeat("x", size-len(head))
	}
	multipartOfSize := func(size int) (string, string) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("username", "cook@example.com")
		mw.WriteField("password", "recipe-password")
		w, _ := mw.CreateFormField("pad")
		tail := "\r\n--" + mw.Boundary() + "--\r\n"
		w.Write([]byte(strings.Repeat("x", size-body.Len()-len(tail))))
		mw.Close()
		return body.String(), mw.FormDataContentType()
	}
	multipartAtCap, multipartType := multipartOfSize(maxBodyBytes)
	multipartOverCap, _ := multipartOfSize(maxBodyBytes + 1)
	for _, tc := range []struct {
		name, method, target, contentType, body string
		header                                  []string
		want                                    int
	}{
		{"a JSON body of exactly 64 KiB is read", "POST", "/api/v1/auth/signup", "application/json", jsonBodyOfSize(maxBodyBytes), nil, http.StatusCreated},
		{"a JSON body one byte over 64 KiB is a 413", "POST", "/api/v1/auth/signup", "application/json", jsonBodyOfSize(maxBodyBytes + 1), nil, http.StatusRequestEntityTooLarge},
		{"a login form of exactly 64 KiB is read", "POST", "/api/v1/auth/login", "application/x-www-form-urlencoded", formOfSize(maxBodyBytes), nil, http.StatusOK},
		{"a login form one byte over 64 KiB is a 413", "POST", "/api/v1/auth/login", "application/x-www-form-urlencoded", formOfSize(maxBodyBytes + 1), nil, http.StatusRequestEntityTooLarge},
		{"a multipart login of exactly 64 KiB is read", "POST", "/api/v1/auth/login", multipartType, multipartAtCap, nil, http.StatusOK},
		{"a multipart login one byte over 64 KiB is a 413", "POST", "/api/v1/auth/login", multipartType, multipartOverCap, nil, http.StatusRequestEntityTooLarge},
		{"a recipe body one byte over 64 KiB is a 413", "POST", "/api/v1/recipes/", "application/json", jsonBodyOfSize(maxBodyBytes + 1), bearer(token), http.StatusRequestEntityTooLarge},
		{"a body over 64 KiB is a 413 even where none is read", "GET", "/api/v1/recipes/1", "text/plain", strings.Repeat("x", maxBodyBytes+1), nil, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.send(tc.method, tc.target, strings.NewReader(tc.body), append([]string{"Content-Type", tc.contentType}, tc.header...)...)
			if len(tc.body) != maxBodyBytes && len(tc.body) != maxBodyBytes+1 {
				t.Fatalf("the test's body is %d bytes, want %d or %d", len(tc.body), maxBodyBytes, maxBodyBytes+1)
			}
			if tc.want == http.StatusRequestEntityTooLarge {
				expectDetail(t, resp, tc.want, "Request body too large")
				if got := resp.Header.Get("Connection"); got != "close" {
					t.Errorf("%s %s: Connection = %q, want close: the rest of the body is not read", tc.method, tc.target, got)
				}
				return
			}
			expectStatus(t, resp, tc.want)
		})
	}

	server := httptest.NewServer(e.handler)
	defer server.Close()
	t.Run("a body announced as 1 MB is refused before it is sent", func(t *testing.T) {
		conn, err := net.Dial("tcp", server.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		fmt.Fprintf(conn, "POST /api/v1/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
		conn.Write([]byte(`{"email":"slow@example.com","password":"`)) // and no more
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a 1 MB body that was never sent: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST /api/v1/auth/signup with Content-Length: 1000000 = %d, want 413", resp.StatusCode)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the 413 took %s, want it at once", took)
		}
	})
	t.Run("a chunked body that grows past 64 KiB is a 413", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader(`{"email":"chunked@example.com","password":"password123","pad":"`),
			strings.NewReader(strings.Repeat("x", 2*maxBodyBytes)), strings.NewReader(`"}`))
		req, _ := http.NewRequest("POST", server.URL+"/api/v1/auth/signup", struct{ io.Reader }{body}) // no length: chunked
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST /api/v1/auth/signup chunked, 128 KiB = %d (length %d), want 413", resp.StatusCode, req.ContentLength)
		}
	})
}

// acceptIn runs l.Accept in a goroutine and returns where its result goes.
func acceptIn(l net.Listener) chan net.Conn {
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	return accepted
}

func TestTheConnectionLimiter(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitConnections(inner, 2, nil)
	defer l.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var served []net.Conn
	for range 2 {
		dial()
		select {
		case c := <-acceptIn(l):
			served = append(served, c)
		case <-time.After(5 * time.Second):
			t.Fatal("Accept did not return a connection while under the cap")
		}
	}
	dial()
	third := acceptIn(l)
	select {
	case <-third:
		t.Fatal("a third connection was accepted while two were open, with a cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(l.slots); n != 2 {
		t.Errorf("%d slots taken, want 2", n)
	}

	served[0].Close()
	served[0].Close() // a second Close must not give back a second slot
	select {
	case c := <-third:
		if c == nil {
			t.Fatal("Accept failed")
		}
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not accepted once one closed")
	}
	if n := len(l.slots); n != 2 {
		t.Errorf("%d slots taken after one of three connections closed twice, want 2", n)
	}

	t.Run("closing the listener ends an Accept that waits for a slot", func(t *testing.T) {
		waiting := acceptIn(l)
		time.Sleep(50 * time.Millisecond)
		l.Close()
		select {
		case c := <-waiting:
			if c != nil {
				t.Error("Accept returned a connection after Close")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Accept still waits after the listener was closed")
		}
	})
}

// TestMaxConnectionsCapsTheServer starts the program with
// -max-connections 1: while one client holds a connection open, another
// is not served; once it closes, the other is.
func TestMaxConnectionsCapsTheServer(t *testing.T) {
	addr := freeLoopbackAddress(t)
	env := map[string]string{"BCRYPT_COST": "4"}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", addr, "-db", filepath.Join(t.TempDir(), "app.db"), "-max-connections", "1"},
			func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitForHealthy(t, "http://"+addr)
	http.DefaultClient.CloseIdleConnections() // waitForHealthy's, which would hold the one slot

	holder, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	fmt.Fprintf(holder, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") // served, then kept alive
	resp, err := http.ReadResponse(bufio.NewReader(holder), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the first connection was not served: %v", err)
	}

	answered := make(chan error, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a second connection was served (%v) while the first was open, with -max-connections 1", err)
	case <-time.After(300 * time.Millisecond):
	}
	holder.Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("the second connection, once the first closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection was not served after the first closed")
	}
}

func TestOneClientHoldsOnlyItsShareOfTheConnections(t *testing.T) {
	// A cap of 32 gives each client address 8. The loopback range is all
	// this machine's, so 127.0.0.2 is a second client.
	share := perClientShare(32)
	if share != 8 {
		t.Fatalf("perClientShare(32) = %d, want 8", share)
	}
	for _, tc := range []struct {
		name   string
		exempt func(netip.Addr) bool
		want   bool // whether the connection past the share is served
	}{
		{"a connection past a client's share is closed, and others are served", nil, false},
		{"a trusted proxy has no share", func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			l := limitConnections(inner, 32, tc.exempt)
			defer l.Close()
			dialFrom := func(local string) net.Conn {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
				c, err := d.Dial("tcp", inner.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			accept := func() net.Conn {
				t.Helper()
				select {
				case c := <-acceptIn(l):
					if c == nil {
						t.Fatal("Accept failed")
					}
					t.Cleanup(func() { c.Close() })
					return c
				case <-time.After(5 * time.Second):
					t.Fatal("Accept returned nothing")
				}
				return nil
			}
			for range share {
				dialFrom("127.0.0.1")
				accept()
			}
			// Accept takes the extra connection first; if it closes it,
			// the next one it returns is the other client's.
			extra := dialFrom("127.0.0.1")
			dialFrom("127.0.0.2")
			next := accept()
			servedExtra := next.RemoteAddr().(*net.TCPAddr).IP.Equal(net.ParseIP("127.0.0.1"))
			if !servedExtra {
				// The extra one was closed by Accept: its client reads EOF.
				extra.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := extra.Read(make([]byte, 1)); err == nil {
					t.Error("the connection past the share was neither served nor closed")
				}
			} else {
				accept() // the other client's
			}
			if servedExtra != tc.want {
				t.Errorf("connection %d from one client served = %v, want %v", share+1, servedExtra, tc.want)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if n := len(l.open); n > 2 {
				t.Errorf("the share map holds %d clients, want at most the 2 with open connections", n)
			}
		})
	}
}

func TestRecipeCreationsAreLimitedPerAccount(t *testing.T) {
	clock := newTestClock()
	cfg := newTestConfig(t)
	defaultLimits(&cfg) // a burst of 200, then one a second
	e := startTestEnv(t, cfg, clock.Now)
	_, token := newRecipeUser(e, "importer@example.com")
	_, otherToken := newRecipeUser(e, "other@example.com")
	create := func(token string, i int) *http.Response {
		return e.postJSON("/api/v1/recipes/", recipeBody(fmt.Sprintf("Soup %d", i), "Me", "https://example.com/soup"), bearer(token)...)
	}

	t.Run("creations that fail use up nothing", func(t *testing.T) {
		for range 5 {
			expectProblems(t, e.postJSON("/api/v1/recipes/", `{"source":"Me","url":"https://example.com/soup"}`, bearer(token)...), "body.label")
			expectStatus(t, e.postJSON("/api/v1/recipes/", `{"label":"Soup","source":"Me","url":"https://example.com/soup","submitter_id":1}`, bearer(token)...),
				http.StatusForbidden)
		}
	})
	t.Run("an import of 200 recipes at once is served whole", func(t *testing.T) {
		for i := range 200 {
			expectStatus(t, create(token, i), http.StatusCreated)
		}
	})
	t.Run("the next is a 429 with Retry-After, and nothing is stored", func(t *testing.T) {
		resp := create(token, 200)
		if got := resp.Header.Get("Retry-After"); got != "1" {
			t.Errorf("POST /api/v1/recipes/: Retry-After = %q, want 1", got)
		}
		expectDetail(t, resp, http.StatusTooManyRequests, "Too many recipes created, try again later")
		resp = e.get("/api/v1/recipes/search/?keyword=Soup+200")
		if got := decodeBody[struct{ Results []recipe }](t, resp).Results; len(got) != 0 {
			t.Errorf("the refused recipe was stored: %v", got)
		}
	})
	t.Run("another account is not limited", func(t *testing.T) {
		expectStatus(t, create(otherToken, 0), http.StatusCreated)
	})
	t.Run("one creation comes back every second", func(t *testing.T) {
		clock.advance(time.Second)
		expectStatus(t, create(token, 201), http.StatusCreated)
		expectStatus(t, create(token, 202), http.StatusTooManyRequests)
	})
	t.Run("concurrent creations never outrun the budget", func(t *testing.T) {
		clock.advance(5 * time.Second)
		got := burstStatuses(20, func(i int) *http.Response { return create(token, 300+i) })
		if got[http.StatusCreated] != 5 || got[http.StatusTooManyRequests] != 15 {
			t.Errorf("20 concurrent creations with 5 left answered %v, want 5 × 201 and 15 × 429", got)
		}
	})
	t.Run("RECIPE_CREATION_BURST=0 turns the limit off", func(t *testing.T) {
		cfg := newTestConfig(t)
		defaultLimits(&cfg)
		cfg.recipeCreationBurst = 0
		unlimited := startTestEnv(t, cfg, clock.Now)
		_, token := newRecipeUser(unlimited, "importer@example.com")
		for i := range 250 {
			resp := unlimited.postJSON("/api/v1/recipes/", recipeBody(fmt.Sprintf("Stew %d", i), "Me", "https://example.com/stew"), bearer(token)...)
			expectStatus(t, resp, http.StatusCreated)
		}
	})
}
