# frozen_string_literal: true

# Interpreter exit with live engines: no crash, no hang, exit status kept. Each scenario runs in
# a fresh Ruby that leaves without closing anything: engines syncing (polling, long-polling,
# retrying an unreachable edge), an engine from a catalog, threads still looking up, and a thread
# waiting in wait_ready while the interpreter shuts down.
require_relative "test_helper"

class ExitTest < Minitest::Test
  include EntitleTest

  EXIT_BOUND = 60 # seconds: a hang fails the test instead of stalling the suite

  PRELUDE = <<~RUBY
    url, catalog = ARGV[0], ARGV[1]
    polling = Entitle::Engine.connect(url, poll_interval: 0.05)
    raise "not ready" unless polling.wait_ready(20)
    long_polling = Entitle::Engine.connect(url, long_poll: 20)
    raise "not ready" unless long_polling.wait_ready(20)
    retrying = Entitle::Engine.connect("http://127.0.0.1:9", poll_interval: 0.05, max_backoff: 0.1)
    static = Entitle::Engine.from_catalog(catalog)
    [polling, long_polling, retrying, static].each do |engine|
      Thread.new do
        loop do
          engine.enabled?("cus_pro", "sso")
          engine.check("cus_pro", "projects")
          engine.limit("nobody", "projects")
        end
      end
    end
    Thread.new { retrying.wait_ready }
    raise "wrong answer" unless polling.limit("cus_pro", "projects") == 50
    puts "started"
    $stdout.flush
  RUBY

  SCENARIOS = {
    "falls off the end" => ["", 0],
    "exit with a status" => ["exit 7", 7],
    "unhandled exception" => ["raise 'boom'", 1],
    "exit! skips the finalizers" => ["exit!(5)", 5],
    "engines only referenced by threads" => ["polling = long_polling = retrying = static = nil; GC.start; sleep 0.2", 0]
  }.freeze

  def test_exit_with_live_engines
    with_edge do |edge|
      SCENARIOS.each do |name, (code, status)|
        out, err, result, seconds = run_ruby(PRELUDE + code, edge.url, JSON.generate(catalog), timeout: EXIT_BOUND)
        refute_nil result, "#{name}: hung (killed after #{EXIT_BOUND} s)"
        assert_equal "started\n", out, "#{name}: #{err}"
        assert_equal status, result.exitstatus, "#{name}: #{err}"
        refute result.signaled?, "#{name}: killed by a signal"
        assert_operator seconds, :<, 30, name
        refute_match(/segmentation|SIGSEGV|SIGABRT|\[BUG\]|panicked/i, err, name)
        assert_equal "boom", err[/boom/] if name == "unhandled exception"
      end
    end
  end
end
