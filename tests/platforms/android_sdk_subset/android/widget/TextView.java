// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.widget;
import android.content.Context;
public class TextView extends android.view.View {
    public TextView(Context context) { super(context); throw new RuntimeException("Stub!"); }
    public CharSequence getText() { throw new RuntimeException("Stub!"); }
    public final void setText(CharSequence text) { throw new RuntimeException("Stub!"); }
    public final void append(CharSequence text) { throw new RuntimeException("Stub!"); }
}
