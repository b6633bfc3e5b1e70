# frozen_string_literal: true

# Shared helpers: the repository, the `entitle` command, catalogs, a local edge server
# (`entitle serve` on 127.0.0.1, a free port) and fresh Ruby processes.
require "minitest/autorun"
require "io/wait"
require "json"
require "open3"
require "rbconfig"
require "timeout"
require "tmpdir"
require "entitle"

module EntitleTest
  REPO = File.expand_path("../../..", __dir__)
  CONFORMANCE = File.join(REPO, "tests", "conformance")
  TARGET = File.expand_path(ENV.fetch("CARGO_TARGET_DIR", File.join(REPO, "target")), REPO)
  ENTITLE_BIN = ENV.fetch("ENTITLE_BIN", File.join(TARGET, "release", "entitle"))
  LIB = File.expand_path("../lib", __dir__)
  # A fixed evaluation time, before every cancel_at and expires_at in CATALOG.
  AT = 1_700_000_000

  module_function

  # A small catalog; +projects_for_pro+ lets tests publish a changed version.
  def catalog(projects_for_pro = 50)
    {
      "features" => [
        {"key" => "sso", "type" => "flag", "default" => false},
        {"key" => "projects", "type" => "limit", "default" => 3},
        {"key" => "seats", "type" => "limit", "default" => 1, "per_unit" => true},
        {"key" => "api_calls", "type" => "limit", "default" => 1000}
      ],
      "products" => [
        {"id" => "prod_pro", "features" => {"sso" => true, "projects" => projects_for_pro, "seats" => 1,
                                            "api_calls" => 100_000}},
        {"id" => "prod_enterprise", "features" => {"sso" => true, "projects" => "unlimited",
                                                   "api_calls" => "unlimited"}}
      ],
      "customers" => [
        {"id" => "cus_pro", "subscriptions" => [
          {"id" => "sub_1", "status" => "active", "items" => [{"product" => "prod_pro", "quantity" => 5}]}
        ]},
        {"id" => "cus_ent", "subscriptions" => [
          {"id" => "sub_2", "status" => "active", "items" => [{"product" => "prod_enterprise"}]}
        ]},
        {"id" => "cus_cancelling", "subscriptions" => [
          {"id" => "sub_3", "status" => "active", "cancel_at" => AT + 3600,
           "items" => [{"product" => "prod_pro"}]}
        ]},
        {"id" => "cus_override", "overrides" => {"projects" => 7, "sso" => true}}
      ]
    }
  end

  def run_cli(*args)
    raise "#{ENTITLE_BIN} not found: build it with `cargo build --release -p entitle-cli`" unless File.executable?(ENTITLE_BIN)

    out, err, status = Open3.capture3(ENTITLE_BIN, *args)
    raise "entitle #{args.join(" ")} failed: #{err}" unless status.success?

    out
  end

  # v1.snap and v2.snap (pro plan: 50 then 60 projects) and the delta between them, in +dir+.
  def snapshots(dir)
    paths = {}
    [[1, 50], [2, 60]].each do |version, projects|
      src = File.join(dir, "v#{version}.json")
      File.write(src, JSON.generate(catalog(projects)))
      paths[:"v#{version}"] = File.join(dir, "v#{version}.snap")
      run_cli("build", src, "-o", paths[:"v#{version}"], "--version", version.to_s)
    end
    paths[:delta] = File.join(dir, "v1-v2.delta")
    run_cli("diff", paths[:v1], paths[:v2], "-o", paths[:delta])
    paths
  end

  # An edge directory served by `entitle serve` on 127.0.0.1 (a free port).
  class Edge
    attr_reader :url, :dir

    def initialize(root)
      @work = root
      @dir = File.join(root, "edge")
      @published = 0
      @pid = nil
    end

    def publish(data)
      @published += 1
      path = File.join(@work, "publish-#{@published}.json")
      File.write(path, JSON.generate(data))
      EntitleTest.run_cli("publish", path, "--edge", @dir)
    end

    def start
      out_r, out_w = IO.pipe
      @pid = Process.spawn(ENTITLE_BIN, "serve", @dir, "--addr", "127.0.0.1:0",
                           out: out_w, err: File::NULL)
      out_w.close
      line = out_r.wait_readable(30) ? out_r.gets.to_s : ""
      @out = out_r
      found = line[%r{https?://[0-9.]+:[0-9]+}]
      unless found
        stop
        raise "`entitle serve` did not name its address; first line: #{line.inspect}"
      end
      @url = found
      self
    end

    def stop
      return unless @pid

      begin
        Process.kill("TERM", @pid)
        Timeout.timeout(10) { Process.wait(@pid) }
      rescue Timeout::Error
        Process.kill("KILL", @pid)
        Process.wait(@pid)
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      end
      @out&.close
      @pid = nil
    end
  end

  # Yields an edge at version 1 of catalog(), served until the block ends.
  def with_edge
    Dir.mktmpdir("entitle-edge") do |dir|
      edge = Edge.new(dir)
      edge.publish(catalog)
      begin
        edge.start
        yield edge, dir
      ensure
        edge.stop
      end
    end
  end

  # Polls the block until it is truthy or +timeout+ seconds pass; returns its last value.
  def wait_until(timeout = 20, interval = 0.05)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      value = yield
      return value if value
      return value if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep interval
    end
  end

  # Runs +code+ in a fresh Ruby that loads this gem; returns [stdout, stderr, status, seconds].
  # A process that outlives +timeout+ is killed (status then nil).
  def run_ruby(code, *args, timeout: 60, env: {})
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    out_r, out_w = IO.pipe
    err_r, err_w = IO.pipe
    pid = Process.spawn(env, RbConfig.ruby, "-I", LIB, "-rentitle", "-e", code, *args,
                        out: out_w, err: err_w, pgroup: true)
    out_w.close
    err_w.close
    readers = [Thread.new { out_r.read }, Thread.new { err_r.read }]
    status = nil
    begin
      Timeout.timeout(timeout) { _, status = Process.wait2(pid) }
    rescue Timeout::Error
      Process.kill("KILL", -pid)
      Process.wait(pid)
    end
    out, err = readers.map(&:value)
    [out, err, status, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started]
  ensure
    out_r&.close
    err_r&.close
  end
end
