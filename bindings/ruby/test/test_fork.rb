# frozen_string_literal: true

# Fork safety. A pre-forking server connects an engine in its master, then forks workers: threads
# do not survive fork(), so the gem restarts every syncing engine's thread in the child through
# the Process._fork hook, with no server hook. Tested with a real fork loop, with forks while
# other threads are mid-lookup, and with Puma in cluster mode (2 workers) serving a Rack app.
require_relative "test_helper"
require "net/http"

class ForkTest < Minitest::Test
  include EntitleTest

  POLL = 0.1

  # Forks a child that runs the block and reports its result (one line) through a pipe; the child
  # never returns into minitest. Returns [pid, reader].
  def fork_child
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      code = 0
      begin
        writer.puts(yield)
      rescue Exception => e # rubocop:disable Lint/RescueException -- report anything
        writer.puts("error #{e.class}: #{e.message}")
        code = 3
      ensure
        writer.flush
        exit!(code) # skip at_exit handlers: minitest's belong to the parent
      end
    end
    writer.close
    [pid, reader]
  end

  # The child's exit status; kills it when it outlives +timeout+ seconds.
  def reap(pid, timeout = 30)
    Timeout.timeout(timeout) { return Process.wait2(pid)[1].exitstatus }
  rescue Timeout::Error
    Process.kill("KILL", pid)
    Process.wait(pid)
    nil
  end

  def test_the_hook_is_installed
    assert_includes Process.singleton_class.ancestors, Entitle::ForkHook
  end

  def test_forked_children_follow_the_edge
    with_edge do |edge|
      engine = Entitle::Engine.connect(edge.url, poll_interval: POLL)
      assert engine.wait_ready(20)
      children = Array.new(3) do
        fork_child do
          # Without the restarted sync thread this engine would serve version 1 forever.
          ok = wait_until(30) { engine.limit("cus_pro", "projects") == 60 }
          "#{ok ? "ok" : "stuck"} #{engine.version} #{engine.status.syncs}"
        end
      end
      edge.publish(catalog(60))
      children.each do |pid, reader|
        line = reader.gets.to_s.strip
        assert_equal 0, reap(pid), line
        assert_match(/\Aok 2 [1-9]\d*\z/, line)
        reader.close
      end
      assert wait_until { engine.limit("cus_pro", "projects") == 60 } # the parent too
      engine.close
    end
  end

  def test_popen_dash_is_a_fork_too
    with_edge do |edge|
      engine = Entitle::Engine.connect(edge.url, poll_interval: POLL)
      assert engine.wait_ready(20)
      io = IO.popen("-", "r+")
      if io.nil?
        $stdout.sync = true
        $stdout.puts "ready"
        $stdin.gets
        ok = wait_until(30) { engine.limit("cus_pro", "projects") == 60 }
        $stdout.puts(ok ? "ok" : "stuck")
        exit!(0)
      end
      assert_equal "ready\n", io.gets
      edge.publish(catalog(60))
      io.puts "go"
      assert_equal "ok\n", io.gets
      io.close
      engine.close
    end
  end

  def test_a_fork_that_bypasses_the_hook
    with_edge do |edge|
      engine = Entitle::Engine.connect(edge.url, poll_interval: POLL)
      assert engine.wait_ready(20)
      raw_fork = Process.method(:_fork).super_method # Process._fork without Entitle::ForkHook
      [false, true].each do |restart|
        reader, writer = IO.pipe
        pid = raw_fork.call
        if pid.zero?
          reader.close
          before = engine.status.syncs # carried over from the parent
          restarted = restart ? Entitle.after_fork : 0
          synced = wait_until(restart ? 10 : 1) { engine.status.syncs > before }
          engine.close # must not wait for a thread of the parent
          writer.puts "#{restarted} #{synced} #{engine.closed?}"
          writer.flush
          exit!(0)
        end
        writer.close
        line = reader.gets.to_s.strip
        assert_equal 0, reap(pid), line
        assert_equal restart ? "1 true true" : "0 false true", line
        reader.close
      end
      refute engine.closed?
      engine.close
    end
  end

  def test_fork_while_other_threads_are_mid_lookup
    with_edge do |edge|
      syncing = Entitle::Engine.connect(edge.url, poll_interval: POLL)
      assert syncing.wait_ready(20)
      static = Entitle::Engine.from_catalog(catalog)
      stop = false
      hammers = [syncing, static].flat_map do |engine|
        Array.new(2) do
          Thread.new do
            until stop
              engine.enabled?("cus_pro", "sso") or raise "sso"
              engine.check("cus_pro", "projects").limit == 50 or raise "projects"
              engine.entitlements("cus_ent")
            end
          end
        end
      end
      6.times do
        pid, reader = fork_child do
          # The child has only this thread: look up from new threads, and sync.
          counts = Array.new(2) do
            Thread.new { 2_000.times.count { syncing.enabled?("cus_pro", "sso") && static.limit("cus_ent", "projects") == Float::INFINITY } }
          end.map(&:value)
          before = syncing.status.syncs # carried over from the parent
          "#{counts.sum} #{syncing.wait_ready(5)} #{wait_until(10) { syncing.status.syncs > before }}"
        end
        line = reader.gets.to_s.strip
        reader.close
        assert_equal 0, reap(pid), line
        assert_equal "4000 true true", line
      end
      stop = true
      hammers.each(&:join)
      [syncing, static].each(&:close)
    end
  end

  def test_puma_cluster_mode_workers_follow_the_edge
    puma = ENV.fetch("PUMA", "puma")
    skip "puma is not installed" unless system("command -v #{puma} >/dev/null")
    with_edge do |edge|
      env = {"ENTITLE_EDGE_URL" => edge.url, "RUBYOPT" => "-I#{LIB}"}
      log_r, log_w = IO.pipe
      pid = Process.spawn(env, puma, "-C", File.join(__dir__, "fixtures", "puma_cluster.rb"),
                          out: log_w, err: log_w, pgroup: true)
      log_w.close
      begin
        port = nil
        booted = 0
        Timeout.timeout(60) do
          until port && booted == 2
            line = log_r.gets or flunk("puma exited before it booted its workers")
            port ||= line[%r{Listening on http://127\.0\.0\.1:(\d+)}, 1]
            booted += 1 if line.include?("booted")
          end
        end
        answers = ->(version) { workers_at(Integer(port), version) }
        assert_equal 2, answers.call(1).size, "both workers answer version 1"
        edge.publish(catalog(60))
        assert_equal 2, answers.call(2).size, "every worker answers the new version"
      ensure
        Process.kill("TERM", -pid)
        reap(pid, 30)
        log_r.close
      end
    end
  end

  private

  # The worker pids seen answering +version+ (with the limit that version gives), asking until
  # two have or 30 seconds pass.
  def workers_at(port, version)
    want = version == 1 ? 50 : 60
    seen = {}
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
    while seen.size < 2 && Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
      threads = Array.new(4) { Thread.new { Net::HTTP.get(URI("http://127.0.0.1:#{port}/")) } }
      threads.map(&:value).each do |body|
        pid, served, limit = body.split.map { |x| Integer(x) }
        seen[pid] = true if served == version && limit == want
      end
    end
    seen.keys
  end
end
