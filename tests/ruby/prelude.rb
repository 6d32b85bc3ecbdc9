# Loaded before every Ruby snippet of tests/sidekiq_ruby.py: Debian's real Sidekiq on the
# test Redis (REDIS_URL), and `emit` to hand a JSON result back to Python.
require "json"
require "sidekiq"
require "sidekiq/api"

Sidekiq.configure_client { |config| config.redis = { url: ENV.fetch("REDIS_URL") } }
Sidekiq.logger.level = Logger::WARN

def emit(value)
  $stdout.puts("RESULT " + JSON.generate(value))
  $stdout.flush
end

# Sidekiq::Web driven in-process through rack-test (no port), with the cookie session it needs.
def web_app
  require "sidekiq/web"
  require "rack/test"
  require "rack/session/cookie"
  Rack::Builder.new do
    use Rack::Session::Cookie, secret: "s" * 64, same_site: true, max_age: 86_400
    run Sidekiq::Web
  end
end
