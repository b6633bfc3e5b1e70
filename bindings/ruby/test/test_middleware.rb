# frozen_string_literal: true

# The Rack middleware example (examples/), started under Puma and called over HTTP: 200 for an
# entitled customer, 403 with the reason for the others, 400 for an id that is not UTF-8.
require_relative "test_helper"
require "net/http"

class MiddlewareTest < Minitest::Test
  include EntitleTest

  EXAMPLES = File.expand_path("../examples", __dir__)

  def test_middleware_over_http
    Dir.mktmpdir do |dir|
      source = File.join(dir, "catalog.json")
      File.write(source, JSON.generate(catalog))
      env = {"ENTITLE_SOURCE" => source, "RUBYOPT" => "-I#{LIB}"}
      log_r, log_w = IO.pipe
      pid = Process.spawn(env, ENV.fetch("PUMA", "puma"), "-b", "tcp://127.0.0.1:0", "-t", "1:2",
                          File.join(EXAMPLES, "config.ru"), out: log_w, err: log_w, pgroup: true)
      log_w.close
      begin
        port = nil
        Timeout.timeout(60) do
          until port
            line = log_r.gets or flunk("puma exited")
            port = line[%r{Listening on http://127\.0\.0\.1:(\d+)}, 1]
          end
        end
        get = lambda do |customer|
          request = Net::HTTP::Get.new("/")
          request["X-Customer-Id"] = customer if customer
          Net::HTTP.start("127.0.0.1", Integer(port)) { |http| http.request(request) }
        end

        ok = get.call("cus_pro")
        assert_equal "200", ok.code
        assert_equal "welcome\n", ok.body

        denied = get.call("nobody")
        assert_equal "403", denied.code
        assert_equal "customer_not_found", denied["x-entitle-reason"]
        assert_equal({"error" => "not entitled", "feature" => "sso", "reason" => "customer_not_found", "version" => 0},
                     JSON.parse(denied.body))

        assert_equal "200", get.call("cus_override").code # an override switches sso on
        cancelled = get.call("cus_cancelling") # its subscription has ended by now
        assert_equal "403", cancelled.code
        assert_equal "default", JSON.parse(cancelled.body)["reason"]
        assert_equal "customer_unknown", get.call(nil)["x-entitle-reason"]
        # A header that is not UTF-8 is the client's mistake: 400, not an exception (a 500).
        invalid = get.call("cus\xff".b)
        assert_equal "400", invalid.code
        assert_equal "customer_invalid", invalid["x-entitle-reason"]
      ensure
        Process.kill("TERM", -pid)
        Timeout.timeout(30) { Process.wait(pid) }
        log_r.close
      end
    end
  end
end
