# frozen_string_literal: true

# A Rack app behind EntitlementMiddleware: `/` answers only customers entitled to `sso`.
#
#   ENTITLE_SOURCE=catalog.snap puma examples/config.ru          # a snapshot or catalog file
#   ENTITLE_SOURCE=https://edge.example.com puma examples/config.ru
#   curl -H 'X-Customer-Id: cus_123' localhost:9292/
require_relative "entitlement_middleware"

ENGINE = Entitle::Engine.open(ENV.fetch("ENTITLE_SOURCE"))
ENGINE.wait_ready(10)

use EntitlementMiddleware, engine: ENGINE, feature: ENV.fetch("ENTITLE_FEATURE", "sso")
run ->(_env) { [200, {"content-type" => "text/plain"}, ["welcome\n"]] }
