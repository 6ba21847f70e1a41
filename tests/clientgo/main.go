// Command clientgo runs client-go's leader election (tools/leaderelection with
// resourcelock.LeaseLock) for lockheed's Lease interoperability tests
// (tests/test_clientgo_interop.py). It is a thin shell: every decision is
// client-go's own. Each step is reported on stdout as one JSON line that
// starts with {"event":"<name>" and carries "mono", the CLOCK_MONOTONIC time
// in nanoseconds (the clock behind Python's time.monotonic_ns() on Linux), so
// that stamps of different processes can be compared.
//
//	clientgo elect --kubeconfig K --namespace N --name LEASE --identity ID
//	    [--lease-duration 3s] [--renew-deadline 2s] [--retry-period 250ms]
//	    [--release-on-cancel=true] [--hold 0]
//	clientgo contend --kubeconfig K --namespace N --name LEASE --identity ID
//	    --rounds N --log FILE [--hold-max 100ms] [--pause-max 300ms] [timing flags]
//
// elect prints "ready", runs one election and stops when a line arrives on
// stdin or stdin ends (or, with --hold, that long after it started leading),
// by cancelling the election's context: with --release-on-cancel client-go
// then releases the Lease. Events: "new_leader" (client-go's OnNewLeader, with
// the identity it observed), "started" (OnStartedLeading), "work_done" (the
// context client-go gave the leader's work is done), "stopped"
// (OnStoppedLeading), "exited"; and "log" for every line client-go logs up to
// verbosity 4 (for example "Lease is held by and has not yet expired").
//
// contend is the Go side of the mixed run: it waits for a line on stdin, then
// takes the Lease --rounds times, each time holding it up to --hold-max and
// then stopping the election (which releases it), and pausing up to
// --pause-max before the next election. After each hold it appends
// "go <identity> <start_ns> <end_ns> <pid>" to --log in one O_APPEND write:
// start when OnStartedLeading was called, end just before the election was
// stopped.
//
// Exit status: 0 done, 1 failed, 2 usage error.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

var stdoutMu sync.Mutex

// monotonicNs reads CLOCK_MONOTONIC, which every process of the host shares.
func monotonicNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// emit prints one JSON line {"event":event,"mono":...,...fields}.
func emit(event string, fields map[string]interface{}) {
	out := map[string]interface{}{"event": event, "mono": monotonicNs()}
	for k, v := range fields {
		out[k] = v
	}
	line, err := json.Marshal(out)
	if err != nil {
		line = []byte(fmt.Sprintf(`{"event":%q,"marshal_error":%q}`, event, err.Error()))
	}
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	_, _ = os.Stdout.Write(append(line, '\n'))
}

type options struct {
	kubeconfig, namespace, name, identity string
	leaseDuration, renewDeadline, retry   time.Duration
	releaseOnCancel                       bool
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (required)")
	fs.StringVar(&o.namespace, "namespace", "", "namespace of the Lease (required)")
	fs.StringVar(&o.name, "name", "", "Lease name (required)")
	fs.StringVar(&o.identity, "identity", "", "holder identity (required)")
	fs.DurationVar(&o.leaseDuration, "lease-duration", 3*time.Second, "LeaseDuration")
	fs.DurationVar(&o.renewDeadline, "renew-deadline", 2*time.Second, "RenewDeadline")
	fs.DurationVar(&o.retry, "retry-period", 250*time.Millisecond, "RetryPeriod")
	fs.BoolVar(&o.releaseOnCancel, "release-on-cancel", true, "ReleaseOnCancel")
}

func (o *options) check() error {
	if o.kubeconfig == "" || o.namespace == "" || o.name == "" || o.identity == "" {
		return errors.New("--kubeconfig, --namespace, --name and --identity are required")
	}
	return nil
}

func (o *options) lock() (*resourcelock.LeaseLock, error) {
	config, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, err
	}
	config.QPS, config.Burst = 100, 200 // the tests poll faster than client-go's default limit
	cset, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	return &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: o.name, Namespace: o.namespace},
		Client:     cset.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.identity},
	}, nil
}

// elector builds client-go's LeaderElector; onStarted runs as OnStartedLeading.
func (o *options) elector(
	lock *resourcelock.LeaseLock, onStarted func(context.Context),
) (*leaderelection.LeaderElector, error) {
	return leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.leaseDuration,
		RenewDeadline:   o.renewDeadline,
		RetryPeriod:     o.retry,
		ReleaseOnCancel: o.releaseOnCancel,
		Name:            o.name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: onStarted,
			OnStoppedLeading: func() { emit("stopped", map[string]interface{}{"identity": o.identity}) },
			OnNewLeader: func(identity string) {
				emit("new_leader", map[string]interface{}{"leader": identity})
			},
		},
	})
}

// logTo sends client-go's log, up to verbosity 4, to stdout as "log" events.
func logTo(ctx context.Context) context.Context {
	logger := funcr.NewJSON(func(obj string) {
		emit("log", map[string]interface{}{"entry": json.RawMessage(obj)})
	}, funcr.Options{Verbosity: 4})
	klog.SetLogger(logger)
	return klog.NewContext(ctx, logger)
}

// stdinLines delivers a value for every line on stdin, and closes at its end.
func stdinLines() <-chan struct{} {
	lines := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			lines <- struct{}{}
		}
		close(lines)
	}()
	return lines
}

func runElect(args []string) int {
	fs := flag.NewFlagSet("elect", flag.ContinueOnError)
	var o options
	o.register(fs)
	hold := fs.Duration("hold", 0, "stop this long after starting to lead (0: on stdin)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	lock, err := o.lock()
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return 1
	}
	ctx, cancel := context.WithCancel(logTo(context.Background()))
	defer cancel()
	stop := func(why string) {
		emit("stopping", map[string]interface{}{"why": why})
		cancel()
	}
	elector, err := o.elector(lock, func(work context.Context) {
		emit("started", map[string]interface{}{"identity": o.identity})
		go func() {
			<-work.Done()
			emit("work_done", map[string]interface{}{"identity": o.identity})
		}()
		if *hold > 0 {
			time.AfterFunc(*hold, func() { stop("hold") })
		}
	})
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return 1
	}
	lines := stdinLines()
	go func() {
		<-lines
		stop("stdin")
	}()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	go func() {
		<-signals
		stop("SIGTERM")
	}()
	emit("ready", map[string]interface{}{"identity": o.identity, "pid": os.Getpid()})
	elector.Run(ctx)
	emit("exited", map[string]interface{}{"identity": o.identity})
	return 0
}

func runContend(args []string) int {
	fs := flag.NewFlagSet("contend", flag.ContinueOnError)
	var o options
	o.register(fs)
	rounds := fs.Int("rounds", 1, "elections to win")
	logPath := fs.String("log", "", "holds log (required)")
	holdMax := fs.Duration("hold-max", 100*time.Millisecond, "longest hold")
	pauseMax := fs.Duration("pause-max", 300*time.Millisecond, "longest pause between elections")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := o.check(); err != nil || *logPath == "" {
		fmt.Fprintln(os.Stderr, "--log and", err)
		return 2
	}
	log, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return 1
	}
	defer log.Close()
	lock, err := o.lock()
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return 1
	}
	base := logTo(context.Background())
	emit("ready", map[string]interface{}{"identity": o.identity, "pid": os.Getpid()})
	lines := stdinLines()
	if _, ok := <-lines; !ok {
		return 2
	}
	for round := 0; round < *rounds; round++ {
		ctx, cancel := context.WithCancel(base)
		var writeErr error
		elector, err := o.elector(lock, func(context.Context) {
			start := monotonicNs()
			time.Sleep(time.Duration(rand.Int63n(int64(*holdMax) + 1)))
			end := monotonicNs()
			line := fmt.Sprintf("go %s %d %d %d\n", o.identity, start, end, os.Getpid())
			_, writeErr = log.WriteString(line)
			cancel()
		})
		if err != nil {
			cancel()
			emit("error", map[string]interface{}{"error": err.Error()})
			return 1
		}
		elector.Run(ctx)
		cancel()
		if writeErr != nil {
			emit("error", map[string]interface{}{"error": writeErr.Error()})
			return 1
		}
		time.Sleep(time.Duration(rand.Int63n(int64(*pauseMax) + 1)))
	}
	emit("done", map[string]interface{}{"rounds": *rounds})
	return 0
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: clientgo elect|contend [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "elect":
		os.Exit(runElect(os.Args[2:]))
	case "contend":
		os.Exit(runContend(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
