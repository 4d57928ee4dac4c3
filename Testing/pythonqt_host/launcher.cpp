// A stand-in for CTK's AppLauncher as `PythonSlicer` uses it: it starts the real interpreter as a child
// process with the launcher's own standard input, output and error (QProcess::ForwardedChannels and
// ForwardedInputChannel), waits for it, and exits with the child's exit code -- or with EXIT_FAILURE and
// one line on standard error when the child crashed or was killed, as ctkAppLauncher does.
//
// usage: spinesegdiff-launcher PROGRAM [ARGUMENT ...]
#include <QCoreApplication>
#include <QProcess>
#include <QStringList>
#include <cstdio>
#include <cstdlib>

int main(int argc, char* argv[])
{
  QCoreApplication app(argc, argv);
  if (argc < 2)
  {
    std::fprintf(stderr, "usage: %s PROGRAM [ARGUMENT ...]\n", argv[0]);
    return 2;
  }
  QStringList arguments = app.arguments().mid(2);
  QString program = app.arguments().at(1);
  QProcess child;
  child.setProcessChannelMode(QProcess::ForwardedChannels);
  child.setInputChannelMode(QProcess::ForwardedInputChannel);
  QObject::connect(&child, QOverload<int, QProcess::ExitStatus>::of(&QProcess::finished),
                   [&](int exitCode, QProcess::ExitStatus status) {
                     if (status == QProcess::CrashExit)
                     {
                       std::fprintf(stderr, "[%s] exit abnormally - Report the problem.\n", qPrintable(program));
                       app.exit(EXIT_FAILURE);
                       return;
                     }
                     app.exit(exitCode);
                   });
  child.start(program, arguments);
  if (!child.waitForStarted())
  {
    std::fprintf(stderr, "could not start [%s]\n", qPrintable(program));
    return EXIT_FAILURE;
  }
  return app.exec();
}
