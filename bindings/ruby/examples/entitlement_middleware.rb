# frozen_string_literal: true

require "json"
require "entitle"

# A Rack middleware that lets a request through only when its customer is entitled to a feature,
# and answers 403 with the reason otherwise. Works in any Rack app, and in Rails:
#
#   # config/initializers/entitle.rb
#   ENTITLE = Entitle::Engine.connect(ENV.fetch("ENTITLE_EDGE_URL"), token: ENV["ENTITLE_TOKEN"],
#                                     cache_dir: Rails.root.join("tmp/entitle").to_s)
#   # config/application.rb
#   config.middleware.use EntitlementMiddleware, engine: ENTITLE, feature: "api_access"
#
# The check is an in-process lookup (about a hundred nanoseconds), so it can run on every request.
# Under Puma's cluster mode or Unicorn nothing else is needed: each forked worker's engine keeps
# syncing by itself.
class EntitlementMiddleware
  # +customer+ finds the customer id in the Rack env (by default the X-Customer-Id header; a real
  # app would read its session or API key).
  def initialize(app, engine:, feature:, customer: ->(env) { env["HTTP_X_CUSTOMER_ID"] })
    @app = app
    @engine = engine
    @feature = feature
    @customer = customer
  end

  def call(env)
    customer = @customer.call(env)
    return deny("customer_unknown", nil) if customer.nil? || customer.empty?

    begin
      decision = @engine.check(customer, @feature)
    rescue Entitle::InvalidArgumentError, EncodingError
      # An id that is not UTF-8 (headers are bytes): the client's mistake, not a server error.
      return deny("customer_invalid", nil, status: 400)
    end
    return @app.call(env) if decision.enabled?

    deny(decision.reason.to_s, decision)
  end

  private

  def deny(reason, decision, status: 403)
    body = JSON.generate(error: status == 400 ? "invalid customer id" : "not entitled",
                         feature: @feature, reason: reason, version: decision&.version)
    [status, {"content-type" => "application/json", "x-entitle-reason" => reason}, [body]]
  end
end
